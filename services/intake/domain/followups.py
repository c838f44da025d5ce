"""Follow-ups from staff (pure): an update ("the agents left", "it is a judicial warrant")
or the all-clear becomes an event on the incident, or a `Refused` saying why not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.envelope import originating
from schemas.events import (
    EncounterUpdated,
    EncounterUpdatedData,
    IncidentResolved,
    IncidentResolvedData,
)
from services.domain.incident import IncidentState
from services.intake.domain.refusals import Refused, invalid
from services.intake.domain.screen import personal_data_errors
from services.intake.reports import field_errors

ALREADY_RESOLVED = "the incident is already resolved"


def decide_follow_up(
    incident: IncidentState,
    raw: Any,
    *,
    resolve: bool,
    actor: str,
    now: datetime,
    event_id: str,
) -> EncounterUpdated | IncidentResolved | Refused:
    """The event a follow-up records: `raw` is the request's JSON (None: no body)."""
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
        return originating(
            IncidentResolved,
            resolved,
            id=event_id,
            source="intake",
            incident_id=incident.incident_id,
            school_id=incident.school_id,
            now=now,
            actor=actor,
        )
    try:
        update = EncounterUpdatedData.model_validate(body)
    except ValidationError as exc:
        return invalid(field_errors(exc))
    if not update.model_dump(exclude_none=True):
        return invalid([{"field": "(body)", "reason": "nothing changed"}])
    return originating(
        EncounterUpdated,
        update,
        id=event_id,
        source="intake",
        incident_id=incident.incident_id,
        school_id=incident.school_id,
        now=now,
        actor=actor,
    )
