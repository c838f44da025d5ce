"""Idempotency-Key decisions (pure): the same school and key always name the same incident;
a repeated report under a key answers with that incident, a different report is refused."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import ValidationError

from schemas.events import (
    EncounterReported,
    EncounterUpdatedData,
    Event,
    derive_id,
    new_event_id,
)
from schemas.report import EncounterReport
from services.domain.incident import IncidentState
from services.intake.domain.refusals import Refused, invalid

KEY_REUSED = "Idempotency-Key already used for a different report"
UPDATE_KEY_REUSED = "Idempotency-Key already used for a different update"

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


# Never part of a derived id nor compared: a note is personal text, sealed in the log (a hash
# of it in an id would outlive its key and could be guessed).
_UPDATE_NOTES = {"notes", "notes_sealed", "notes_v1"}


def update_facts(body: Any) -> dict[str, Any] | None:
    """An update body's facts (its note left out) as the log stores them; None if the body
    is not a valid update (the decision then says why)."""
    try:
        update = EncounterUpdatedData.model_validate(body if body is not None else {})
    except ValidationError:
        return None
    return update.model_dump(mode="json", exclude_none=True, exclude=_UPDATE_NOTES)


def update_id(
    incident_id: str,
    body: Any,
    *,
    idempotency_key: str | None = None,
    submission_id: str | None = None,
) -> str:
    """The id of a staff update (`encounter.updated`): the same incident and Idempotency-Key
    (API), or the same incident, form submission id and facts (pages: one page can send
    several different updates, say Agents left then details), always name the same event, so
    a double submit or a retry records one update and emails one round. Neither: a new id."""
    if idempotency_key:
        return derive_id("encounter.updated", incident_id, "key", idempotency_key)
    if submission_id:
        facts = json.dumps(update_facts(body) or {}, sort_keys=True, separators=(",", ":"))
        return derive_id("encounter.updated", incident_id, "form", submission_id, facts)
    return new_event_id()


def compare_update(incident: IncidentState, event_id: str, body: Any) -> Stored | Refused:
    """Whether the incident already holds the update `event_id`: no (`absent`), this very
    update (`same`: record nothing, send nothing), or another one under the same key
    (refused). Notes are not compared: they are sealed in the log."""
    prior = next((u for u in incident.updates if u.get("event_id") == event_id), None)
    if prior is None:
        return "absent"
    stored = {k: v for k, v in prior.items() if k not in {"at", "event_id", *_UPDATE_NOTES}}
    if update_facts(body) == stored:
        return "same"
    return Refused("key_reused", UPDATE_KEY_REUSED)
