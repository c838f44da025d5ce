"""The district protocol for each kind of document agents show (DESIGN §1).

Shown on the intake form, the incident page and in every alert. A district edits the text in
`<config dir>/protocol.yaml` (`load_protocol`); these are the built-in defaults.
"""

from __future__ import annotations

from schemas.report import Document

_DO_NOT_ADMIN = (
    "Do not admit the agents. Keep them outside; do not let them speak to students or staff. "
    "An administrative warrant or subpoena (e.g. DHS/ICE forms I-200, I-205) does not allow "
    "entry. The law department has been alerted and is reviewing."
)
_JUDICIAL = (
    "Do not grant access yet. Check that the document names a court and is signed by a judge; "
    "wait for the law department, which has been alerted, before anyone is admitted. "
    "Do not share student information or anyone's immigration status."
)

PROTOCOL: dict[Document, str] = {
    Document.NONE: (
        "No document: do not admit the agents. Keep them outside and do not let them speak to "
        "students or staff. The law department and safety office have been alerted."
    ),
    Document.ADMINISTRATIVE_WARRANT: _DO_NOT_ADMIN,
    Document.ADMINISTRATIVE_SUBPOENA: _DO_NOT_ADMIN,
    Document.JUDICIAL_WARRANT: _JUDICIAL,
    Document.JUDICIAL_SUBPOENA: _JUDICIAL,
    Document.COURT_ORDER: _JUDICIAL,
    Document.UNKNOWN: (
        "Treat the document as not allowing entry until the law department reviews it. Keep the "
        "agents outside; ask for a copy; do not share student information or immigration status."
    ),
}

LABELS: dict[str, str] = {
    "ice": "ICE",
    "cbp": "CBP",
    "hsi": "HSI",
    "dhs_other": "DHS (other)",
    "fbi": "FBI",
    "us_marshals": "US Marshals",
    "local_police": "Local police",
    "other": "Other",
    "unknown": "Unknown",
    "none": "No document",
    "administrative_warrant": "Administrative warrant",
    "administrative_subpoena": "Administrative subpoena",
    "judicial_warrant": "Judicial warrant",
    "judicial_subpoena": "Judicial subpoena",
    "court_order": "Court order",
    "yes": "Yes",
    "no": "No",
    "unsure": "Unsure",
    "student": "A student",
    "parent": "A parent",
    "staff": "A staff member",
    "records": "Records",
    "unspecified": "Not stated",
    "kept_outside": "Kept outside",
    "left": "Agents left",
    "entered_with_warrant": "Entered with a warrant",
    "entered_without_consent": "Entered without consent",
}


# Spanish labels, shared by the intake pages and the notifier's alerts.
LABELS_ES: dict[str, str] = {
    "ice": "ICE",
    "cbp": "CBP",
    "hsi": "HSI",
    "dhs_other": "DHS (otra)",
    "fbi": "FBI",
    "us_marshals": "US Marshals",
    "local_police": "Policía local",
    "other": "Otra",
    "unknown": "Desconocido",
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
    "law": "Departamento legal",
    "safety": "Oficina de seguridad",
    "leadership": "Dirección del distrito",
    "principal": "Director(a)",
    "family_liaison": "Enlace con las familias",
}


def label(value: object) -> str:
    raw = getattr(value, "value", value)
    return LABELS.get(str(raw), str(raw))


# --- the editable protocol file (`<config dir>/protocol.yaml`) --------------------------------

from pathlib import Path  # noqa: E402
from typing import Literal  # noqa: E402

from pydantic import BaseModel, ConfigDict, Field, field_validator  # noqa: E402

PROTOCOL_LANGUAGES = ("en", "es")
Language = Literal["en", "es"]

_ALWAYS: dict[str, str] = {
    "en": "Always: never share student information or anyone's immigration status.",
    "es": "Siempre: nunca comparta información de estudiantes ni el estatus migratorio de nadie.",
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
PROTOCOL_ES: dict[Document, str] = {
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

Texts = dict[Language, str]


class Protocol(BaseModel):
    """The district's guidance per document shown, in each language (`protocol.yaml`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    always: Texts = Field(default_factory=lambda: dict(_ALWAYS))  # type: ignore[arg-type]
    documents: dict[Document, Texts] = Field(default_factory=dict)

    @field_validator("always", "documents", mode="after")
    @classmethod
    def _no_blank_text(cls, value: object) -> object:
        items = value.values() if isinstance(value, dict) else []
        for item in items:
            texts = item.values() if isinstance(item, dict) else [item]
            if any(not str(t).strip() for t in texts):
                raise ValueError("protocol text must not be empty")
        return value

    def text(self, document: Document | str, language: str = "en") -> str:
        """Guidance for one document; a missing entry falls back to the built-in text."""
        doc = Document(getattr(document, "value", document))
        given = self.documents.get(doc, {})
        if language in given:
            return given[language]  # type: ignore[index]
        if language == "es":
            return PROTOCOL_ES[doc]
        return given.get("en") or PROTOCOL[doc]

    def always_text(self, language: str = "en") -> str:
        return self.always.get(language) or _ALWAYS.get(language) or _ALWAYS["en"]  # type: ignore[call-overload]

    def all(self, language: str = "en") -> dict[str, str]:
        """Every document's guidance, in the order of the form's choices."""
        return {d.value: self.text(d, language) for d in Document}


DEFAULT_PROTOCOL = Protocol()
PROTOCOL_FILE = "protocol.yaml"


def load_protocol(config_dir: Path) -> Protocol:
    """`<config dir>/protocol.yaml` if present, else the built-in text; a bad file is an error."""
    from services.runtime.config import load_yaml_model

    path = Path(config_dir) / PROTOCOL_FILE
    if not path.exists():
        return DEFAULT_PROTOCOL
    return load_yaml_model(path, Protocol)
