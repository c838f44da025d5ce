"""Follow-ups from staff (pure): an update ("the agents left", "it is a judicial warrant"),
the all-clear, or the all-clear withdrawn ("the agents are back") becomes an event on the
incident, or a `Refused` saying why not."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.envelope import originating
from schemas.events import (
    EncounterUpdated,
    EncounterUpdatedData,
    IncidentReopened,
    IncidentReopenedData,
    IncidentResolved,
    IncidentResolvedData,
    SealedReopenedData,
    SealedResolvedData,
    SealedText,
    SealedUpdateData,
)
from services.domain.incident import IncidentState
from services.intake.domain.refusals import Refused, invalid
from services.intake.domain.screen import personal_data_errors
from services.intake.reports import SealNotes, field_errors

E = TypeVar("E", EncounterUpdated, IncidentResolved, IncidentReopened)

ALREADY_RESOLVED = "the incident is already resolved"
NOT_RESOLVED = "the incident is open: only an all-clear can be withdrawn"


def decide_follow_up(
    incident: IncidentState,
    raw: Any,
    *,
    resolve: bool,
    actor: str,
    now: datetime,
    event_id: str,
    seal: SealNotes | None = None,
) -> EncounterUpdated | IncidentResolved | Refused:
    """The event a follow-up records: `raw` is the request's JSON (None: no body); its note
    sealed with `seal` (needed whenever there is a note: notes never go in clear)."""
    if incident.status == "resolved":
        return Refused("resolved", ALREADY_RESOLVED)
    body = raw if raw is not None else {}
    if refused := personal_data_errors(body):
        return invalid(refused)
    if resolve:
        try:
            resolved = IncidentResolvedData.model_validate(body)
        except ValidationError as exc:
            return invalid(field_errors(exc))
        note = _sealed(resolved.note, seal, event_id=event_id, field="note")
        return _recorded(
            IncidentResolved, SealedResolvedData(note_sealed=note), incident, event_id, now, actor
        )
    try:
        update = EncounterUpdatedData.model_validate(body)
    except ValidationError as exc:
        return invalid(field_errors(exc))
    if not update.model_dump(exclude_none=True):
        return invalid([{"field": "(body)", "reason": "nothing changed"}])
    facts = update.model_dump(exclude={"notes"})
    notes = _sealed(update.notes, seal, event_id=event_id, field="notes")
    data = SealedUpdateData.model_validate({**facts, "notes_sealed": notes})
    return _recorded(EncounterUpdated, data, incident, event_id, now, actor)


def decide_reopen(
    incident: IncidentState,
    raw: Any,
    *,
    actor: str,
    now: datetime,
    event_id: str,
    seal: SealNotes | None = None,
) -> IncidentReopened | Refused:
    """The all-clear withdrawn (the agents are back, or it was pressed by mistake): refused
    unless the incident is resolved. `raw` may carry a note, sealed like the all-clear's."""
    if incident.status != "resolved":
        return Refused("open", NOT_RESOLVED)
    body = raw if raw is not None else {}
    if refused := personal_data_errors(body):
        return invalid(refused)
    try:
        reopened = IncidentReopenedData.model_validate(body)
    except ValidationError as exc:
        return invalid(field_errors(exc))
    note = _sealed(reopened.note, seal, event_id=event_id, field="note")
    return _recorded(
        IncidentReopened, SealedReopenedData(note_sealed=note), incident, event_id, now, actor
    )


def _recorded(
    kind: type[E],
    data: BaseModel,
    incident: IncidentState,
    event_id: str,
    now: datetime,
    actor: str,
) -> E:
    """A staff follow-up of `kind` on `incident`, as intake records it."""
    return originating(
        kind,
        data,
        id=event_id,
        source="intake",
        incident_id=incident.incident_id,
        school_id=incident.school_id,
        now=now,
        actor=actor,
    )


def _sealed(
    text: str | None, seal: SealNotes | None, *, event_id: str, field: str
) -> SealedText | None:
    if not text:
        return None
    if seal is None:
        raise ValueError("a follow-up's note must be sealed before it is recorded")
    return seal(text, event_id=event_id, field=field)
