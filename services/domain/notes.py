"""What readers show of staff notes (pure): the clear text while the incident's key exists,
"notes removed on <date>" once it was forgotten (`notes.forgotten`) or expired.

Intake's pages and API, the notifier's emails and the after-action report all go through
`reveal` / `open_notes`, so a note is readable in exactly the same places and gone from all of
them at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from schemas.events import (
    EncounterReported,
    EncounterUpdated,
    Event,
    IncidentReopened,
    IncidentResolved,
    NotesForgotten,
    SealedText,
)
from schemas.report import EncounterReport
from services.domain.incident import IncidentState
from services.domain.sealing import DataKey, NotesUnavailable, open_sealed


def sealed_notes(event: Event) -> tuple[str, SealedText | None, str | None] | None:
    """(field name, sealed text, v1 clear text) of an event that carries staff notes."""
    match event:
        case EncounterReported() | EncounterUpdated():
            return "notes", event.data.notes_sealed, event.data.notes_v1
        case IncidentResolved():
            return "note", event.data.note_sealed, event.data.note_v1
        case IncidentReopened():
            return "note", event.data.note_sealed, None
        case _:
            return None


def open_notes(
    event: Event, key: DataKey | None, *, now: datetime, retention: timedelta
) -> str | None:
    """The event's notes in clear; None when it has none; `NotesUnavailable` when they are
    sealed and cannot be opened (key forgotten or expired, blob altered or moved)."""
    found = sealed_notes(event)
    if found is None:
        return None
    field, sealed, clear_v1 = found
    if sealed is None:
        return clear_v1
    return open_sealed(
        sealed,
        key,
        incident_id=event.incident_id,
        event_id=event.id,
        field=field,
        now=now,
        retention=retention,
    )


def removed_on(
    events: Iterable[Event], key: DataKey | None, *, now: datetime, retention: timedelta
) -> datetime | None:
    """When the incident's sealed notes were removed: forgotten by an operator, or expired
    (the first sealed note's time plus the retention); None while they can be read."""
    first_sealed: datetime | None = None
    for event in events:
        if isinstance(event, NotesForgotten):
            return event.occurred_at
        found = sealed_notes(event)
        if first_sealed is None and found is not None and found[1] is not None:
            first_sealed = event.recorded_at
    if first_sealed is None:
        return None
    if key is None or key.expired(now, retention):
        return key.created_at + retention if key else first_sealed + retention
    return None


def reveal(
    state: IncidentState,
    events: list[Event],
    key: DataKey | None,
    *,
    now: datetime,
    retention: timedelta,
) -> IncidentState:
    """The state with its notes opened where the key allows, or marked removed."""
    clear: dict[str, str | None] = {}
    for event in events:
        try:
            clear[event.id] = open_notes(event, key, now=now, retention=retention)
        except NotesUnavailable:
            clear[event.id] = None
    reported = next((e for e in events if isinstance(e, EncounterReported)), None)
    current = clear.get(reported.id) if reported else None
    updates = []
    for update in state.updates:
        shown = {k: v for k, v in update.items() if k not in ("notes_sealed", "notes_v1")}
        note = clear.get(str(update.get("event_id", "")))
        if note is not None:
            shown["notes"] = current = note  # an update's notes replace the report's
        updates.append(shown)
    report = state.report
    if report is not None:
        facts = report.model_dump(exclude={"notes", "notes_sealed", "notes_v1"})
        report = EncounterReport.model_validate({**facts, "notes": current})
    gone = removed_on(events, key, now=now, retention=retention)
    return state.model_copy(update={"report": report, "updates": updates, "notes_removed_on": gone})
