"""The free-text screen applied to intake's requests (pure): the API refuses a report or
follow-up whose free text holds what the protocol never records; the form sends the report at
once without it and says what was held back (services/domain/screening.py decides what)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.domain.screening import Kind, refusal, screen_fields

# Stored in place of a held-back location (the report needs one): says why it is missing.
WITHHELD_LOCATION = "(not recorded: held back by the privacy screen)"


def personal_data_errors(raw: object) -> list[dict[str, str]]:
    """A field error for each free-text field of `raw` that holds refused data, saying what
    it looks like (never the text)."""
    if not isinstance(raw, dict):
        return []
    return [{"field": f, "reason": refusal(kinds)} for f, kinds in screen_fields(raw).items()]


@dataclass(frozen=True)
class HeldBack:
    """A field's text kept out of the report, and what it looked like. Shown back to the
    staff member who wrote it, once; never stored or logged."""

    field: str
    text: str
    kinds: tuple[Kind, ...]


def hold_back(raw: dict[str, Any]) -> tuple[dict[str, Any], list[HeldBack]]:
    """The report without its refused free text (notes dropped, the location replaced by
    `WITHHELD_LOCATION`), and what was held back."""
    found = screen_fields(raw)
    held = [HeldBack(field, str(raw[field]), kinds) for field, kinds in found.items()]
    cleaned = {k: v for k, v in raw.items() if k not in found}
    if "location" in found:
        cleaned["location"] = WITHHELD_LOCATION
    return cleaned, held
