"""The words of an alert in each supported language (pure data).

English labels and protocol text come from services/common/protocol.py (the intake page shows
the same); Spanish ones are here. A language missing a key falls back to English, and the
start-up template check renders every language so a gap shows before an alert is sent.
"""

from __future__ import annotations

from schemas.report import Document
from services.common.protocol import LABELS, PROTOCOL

LANGUAGES = ("en", "es")

_LABELS_ES: dict[str, str] = {
    "ice": "ICE",
    "cbp": "CBP",
    "hsi": "HSI",
    "dhs_other": "DHS (otra)",
    "fbi": "FBI",
    "us_marshals": "US Marshals",
    "local_police": "Policía local",
    "other": "Otra",
    "unknown": "Desconocida",
    "none": "Ningún documento",
    "administrative_warrant": "Orden administrativa",
    "administrative_subpoena": "Citación administrativa",
    "judicial_warrant": "Orden judicial",
    "judicial_subpoena": "Citación judicial",
    "court_order": "Orden de un tribunal",
    "yes": "Sí",
    "no": "No",
    "unsure": "No se sabe",
    "student": "Un estudiante",
    "parent": "Un padre o madre",
    "staff": "Un miembro del personal",
    "records": "Expedientes",
    "unspecified": "No indicado",
    "kept_outside": "Se quedaron afuera",
    "left": "Los agentes se fueron",
    "entered_with_warrant": "Entraron con una orden",
    "entered_without_consent": "Entraron sin consentimiento",
}

_NO_ADMIT_ES = (
    "No deje entrar a los agentes. Manténgalos afuera; no permita que hablen con estudiantes ni "
    "con el personal. Una orden o citación administrativa (p. ej. formularios DHS/ICE I-200, "
    "I-205) no autoriza la entrada. El departamento legal ha sido avisado y lo está revisando."
)
_JUDICIAL_ES = (
    "Todavía no permita el acceso. Verifique que el documento nombre un tribunal y esté firmado "
    "por un juez; espere al departamento legal, que ha sido avisado, antes de dejar entrar a "
    "nadie. No comparta información de estudiantes ni el estatus migratorio de nadie."
)
_PROTOCOL_ES: dict[Document, str] = {
    Document.NONE: (
        "Sin documento: no deje entrar a los agentes. Manténgalos afuera y no permita que hablen "
        "con estudiantes ni con el personal. El departamento legal y la oficina de seguridad han "
        "sido avisados."
    ),
    Document.ADMINISTRATIVE_WARRANT: _NO_ADMIT_ES,
    Document.ADMINISTRATIVE_SUBPOENA: _NO_ADMIT_ES,
    Document.JUDICIAL_WARRANT: _JUDICIAL_ES,
    Document.JUDICIAL_SUBPOENA: _JUDICIAL_ES,
    Document.COURT_ORDER: _JUDICIAL_ES,
    Document.UNKNOWN: (
        "Trate el documento como si no autorizara la entrada hasta que el departamento legal lo "
        "revise. Mantenga a los agentes afuera; pida una copia; no comparta información de "
        "estudiantes ni estatus migratorio."
    ),
}

_ROLES: dict[str, dict[str, str]] = {
    "en": {"law": "law department", "safety": "safety office", "leadership": "district leadership",
           "principal": "principal", "family_liaison": "family liaison"},
    "es": {"law": "departamento legal", "safety": "oficina de seguridad",
           "leadership": "dirección del distrito", "principal": "director(a)",
           "family_liaison": "enlace con las familias"},
}


def label(value: object, language: str) -> str:
    raw = str(getattr(value, "value", value))
    if language == "es":
        return _LABELS_ES.get(raw, LABELS.get(raw, raw))
    return LABELS.get(raw, raw)


def protocol(document: Document, language: str) -> str:
    if language == "es":
        return _PROTOCOL_ES.get(document, PROTOCOL[document])
    return PROTOCOL[document]


def role_name(role: str, language: str) -> str:
    return _ROLES.get(language, _ROLES["en"]).get(role, role)


# What kind of notification this is, said first (subject prefix, headline) — per language.
_KIND_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "escalation": ("ESCALATED: ", "ESCALATION: this alert has not been acknowledged in time. "
                                      "Please respond now."),
        "update": ("UPDATE: ", "UPDATE: the situation at the door has changed. Current details "
                               "below."),
        "resolved": ("ALL CLEAR: ", "ALL CLEAR: the incident has been resolved. No further "
                                    "action is needed."),
    },
    "es": {
        "escalation": ("ESCALADO: ", "ESCALAMIENTO: esta alerta no ha sido confirmada a tiempo. "
                                     "Por favor responda ahora."),
        "update": ("ACTUALIZACIÓN: ", "ACTUALIZACIÓN: la situación en la puerta ha cambiado. "
                                      "Detalles actuales abajo."),
        "resolved": ("DESPEJADO: ", "TODO DESPEJADO: el incidente se ha resuelto. No se necesita "
                                    "más acción."),
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
