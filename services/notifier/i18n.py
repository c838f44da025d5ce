"""The words of an alert in each supported language; they live in the catalogue.

Labels, role names, the notifier's wording and the built-in protocol text are all in
services/domain/i18n.py (the intake pages show the same). A language missing a key falls back to
English, and the start-up template check renders every language so a gap shows before an alert
is sent.
"""

from __future__ import annotations

from schemas.report import Document
from services.domain.i18n import DEFAULT_LANGUAGE, LANGUAGES, MESSAGES, label, role_name, text
from services.domain.protocol import builtin_text

__all__ = ["LANGUAGES", "ack_text", "kind_text", "label", "protocol", "role_name"]


def protocol(document: Document, language: str) -> str:
    """The built-in guidance for the document shown."""
    return builtin_text(document, language)


def kind_text(kind: str, language: str) -> tuple[str, str]:
    """(subject prefix, headline) for a notification kind; empty for the first alert."""
    if f"notify.{kind}.headline" not in MESSAGES[DEFAULT_LANGUAGE]:
        return "", ""
    return text(f"notify.{kind}.prefix", language), text(f"notify.{kind}.headline", language)


def ack_text(language: str) -> str:
    """The words of the acknowledgement link."""
    return text("notify.ack", language)
