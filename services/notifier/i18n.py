"""The words of an alert in each supported language (pure data).

English labels and protocol text come from services/domain/protocol.py (the intake page shows
the same); Spanish ones are here. A language missing a key falls back to English, and the
start-up template check renders every language so a gap shows before an alert is sent.
"""

from __future__ import annotations

from schemas.report import Document
from services.domain.protocol import LABELS, LABELS_ES, PROTOCOL, PROTOCOL_ES

LANGUAGES = ("en", "es")

_ROLES: dict[str, dict[str, str]] = {
    "en": {
        "law": "law department",
        "safety": "safety office",
        "leadership": "district leadership",
        "principal": "principal",
        "family_liaison": "family liaison",
    },
    "es": {
        "law": "departamento legal",
        "safety": "oficina de seguridad",
        "leadership": "dirección del distrito",
        "principal": "director(a)",
        "family_liaison": "enlace con las familias",
    },
}


def label(value: object, language: str) -> str:
    raw = str(getattr(value, "value", value))
    if language == "es":
        return LABELS_ES.get(raw, LABELS.get(raw, raw))
    return LABELS.get(raw, raw)


def protocol(document: Document, language: str) -> str:
    if language == "es":
        return PROTOCOL_ES.get(document, PROTOCOL[document])
    return PROTOCOL[document]


def role_name(role: str, language: str) -> str:
    return _ROLES.get(language, _ROLES["en"]).get(role, role)


# What kind of notification this is, said first (subject prefix, headline) — per language.
_KIND_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "escalation": (
            "ESCALATED: ",
            "ESCALATION: this alert has not been acknowledged in time. Please respond now.",
        ),
        "update": (
            "UPDATE: ",
            "UPDATE: the situation at the door has changed. Current details below.",
        ),
        "resolved": (
            "ALL CLEAR: ",
            "ALL CLEAR: the incident has been resolved. No further action is needed.",
        ),
    },
    "es": {
        "escalation": (
            "ESCALADO: ",
            "ESCALAMIENTO: esta alerta no ha sido confirmada a tiempo. Por favor responda ahora.",
        ),
        "update": (
            "ACTUALIZACIÓN: ",
            "ACTUALIZACIÓN: la situación en la puerta ha cambiado. Detalles actuales abajo.",
        ),
        "resolved": (
            "DESPEJADO: ",
            "TODO DESPEJADO: el incidente se ha resuelto. No se necesita más acción.",
        ),
    },
}
_ACK_TEXT = {
    "en": "Acknowledge (you are handling it)",
    "es": "Confirmar (usted se encarga)",
}


def kind_text(kind: str, language: str) -> tuple[str, str]:
    """(subject prefix, headline) for a notification kind; empty for the first alert."""
    return _KIND_TEXT.get(language, _KIND_TEXT["en"]).get(kind, ("", ""))


def ack_text(language: str) -> str:
    return _ACK_TEXT.get(language, _ACK_TEXT["en"])
