"""Idempotency-Key decisions (pure): the same school and key always name the same incident;
a repeated report under a key answers with that incident, a different report is refused."""

from __future__ import annotations

import re
from typing import Literal

from schemas.events import EncounterReported, Event, derive_id, new_event_id
from schemas.report import EncounterReport
from services.intake.domain.refusals import Refused, invalid

KEY_REUSED = "Idempotency-Key already used for a different report"

Stored = Literal["absent", "same"]


def check_key(key: str | None) -> Refused | None:
    """A refusal if the Idempotency-Key header is present but not 1-200 printable characters."""
    if key is not None and not (1 <= len(key) <= 200 and key.isprintable()):
        return invalid([{"field": "Idempotency-Key", "reason": "1-200 printable characters"}])
    return None


# The report form's hidden submission id (pages.py makes it with new_event_id: a UUID).
SUBMISSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_submission_id(value: str | None) -> Refused | None:
    """A refusal if the form's submission id is present but not 1-64 letters, digits, - or _."""
    if value is not None and not SUBMISSION_ID.fullmatch(value):
        return invalid([{"field": "submission_id", "reason": "1-64 letters, digits, '-' or '_'"}])
    return None


def incident_id_for(school_id: str, idempotency_key: str | None) -> str:
    """The same school and Idempotency-Key always name the same incident (no key: a new one)."""
    if idempotency_key:
        return derive_id("incident", school_id, idempotency_key)
    return new_event_id()


# Notes are compared in clear (the stored ones opened by the caller), never as sealed bytes.
_NOTES = {"notes", "notes_sealed", "notes_v1"}


def same_report(
    stored: EncounterReport,
    new: EncounterReport,
    *,
    new_had_time: bool,
    stored_notes: str | None = None,
) -> bool:
    """Whether a repeated submission carries the same report (time defaults differ)."""
    exclude = _NOTES if new_had_time else {"occurred_at", *_NOTES}
    same_facts = stored.model_dump(exclude=exclude) == new.model_dump(exclude=exclude)
    return same_facts and (stored_notes or None) == (new.notes or None)


def compare_stored(
    prior: Event | None,
    report: EncounterReport,
    *,
    new_had_time: bool,
    prior_notes: str | None = None,
) -> Stored | Refused:
    """What the log already holds under this key's incident: nothing (`absent`), this very
    report (`same`: answer with the incident, record nothing), or another one (refused)."""
    if prior is None:
        return "absent"
    if isinstance(prior, EncounterReported) and same_report(
        prior.data, report, new_had_time=new_had_time, stored_notes=prior_notes
    ):
        return "same"
    return Refused("key_reused", KEY_REUSED)
