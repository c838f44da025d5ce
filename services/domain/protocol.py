"""The district protocol for each kind of document agents show (DESIGN §1).

Shown on the intake form, the incident page and in every alert. A district edits the text in
`<config dir>/protocol.yaml` (`load_protocol`); the built-in defaults, in each language, are in
the catalogue (services/domain/i18n.py, keys `protocol.*`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.report import Document
from services.domain import i18n
from services.domain.i18n import DEFAULT_LANGUAGE, LANGUAGES, Language, is_language
from services.domain.i18n import label as label  # re-exported: audit replay, notifier plan
from services.runtime.config import load_yaml_model

PROTOCOL_LANGUAGES = LANGUAGES
PROTOCOL_FILE = "protocol.yaml"

Texts = dict[Language, str]


def builtin_text(document: Document, language: str = DEFAULT_LANGUAGE) -> str:
    """The built-in guidance for one document (in English for a language we lack)."""
    return i18n.text(f"protocol.{document.value}", language)


def _builtin_always() -> Texts:
    return {lang: i18n.text("protocol.always", lang) for lang in LANGUAGES}


class Protocol(BaseModel):
    """The district's guidance per document shown, in each language (`protocol.yaml`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    always: Texts = Field(default_factory=_builtin_always)
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

    def text(self, document: Document | str, language: str = DEFAULT_LANGUAGE) -> str:
        """Guidance for one document; a missing entry falls back to the built-in text."""
        doc = Document(getattr(document, "value", document))
        given = self.documents.get(doc, {})
        if is_language(language):
            return given.get(language) or builtin_text(doc, language)
        # A language we have no built-in text for reads the district's English first.
        return given.get(DEFAULT_LANGUAGE) or builtin_text(doc)

    def always_text(self, language: str = DEFAULT_LANGUAGE) -> str:
        """The rule that holds whatever document was shown."""
        given = self.always.get(language) if is_language(language) else None
        return given or i18n.text("protocol.always", language)

    def all(self, language: str = DEFAULT_LANGUAGE) -> dict[str, str]:
        """Every document's guidance, in the order of the form's choices."""
        return {d.value: self.text(d, language) for d in Document}


DEFAULT_PROTOCOL = Protocol()


def load_protocol(config_dir: Path) -> Protocol:
    """`<config dir>/protocol.yaml` if present, else the built-in text; a bad file is an error."""
    path = Path(config_dir) / PROTOCOL_FILE
    if not path.exists():
        return DEFAULT_PROTOCOL
    return load_yaml_model(path, Protocol)
