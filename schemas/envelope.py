"""Building event envelopes: the one place ids, correlation, causation, source and times are
filled in (DESIGN §4). Every service makes its events through `caused_by`, `originating` or
`about_incident`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from schemas.events import Event, Source

E = TypeVar("E", bound=Event)


def caused_by(
    cls: type[E],
    cause: Event,
    data: BaseModel,
    *,
    id: str,
    source: Source,
    now: datetime,
    actor: str = "system",
    occurred_at: datetime | None = None,
) -> E:
    """An event of type `cls` that `cause` led to: the same incident and school, the cause's
    correlation carried on, `causation_id` = the cause. `id` is usually derived from the
    cause's ids so that a redelivered cause makes the same event (dropped as a duplicate)."""
    return _envelope(
        cls,
        data,
        id=id,
        source=source,
        incident_id=cause.incident_id,
        school_id=cause.school_id,
        correlation_id=cause.correlation_id,
        causation_id=cause.id,
        now=now,
        actor=actor,
        occurred_at=occurred_at,
    )


def originating(
    cls: type[E],
    data: BaseModel,
    *,
    id: str,
    source: Source,
    incident_id: str,
    school_id: str,
    now: datetime,
    actor: str = "system",
    occurred_at: datetime | None = None,
) -> E:
    """An event no other event caused (a report, an acknowledgement, a pattern, a dead
    letter): it starts or joins the incident's correlation."""
    return about_incident(
        cls,
        data,
        id=id,
        source=source,
        incident_id=incident_id,
        school_id=school_id,
        causation_id=None,
        now=now,
        actor=actor,
        occurred_at=occurred_at,
    )


def about_incident(
    cls: type[E],
    data: BaseModel,
    *,
    id: str,
    source: Source,
    incident_id: str,
    school_id: str,
    causation_id: str | None,
    now: datetime,
    actor: str = "system",
    occurred_at: datetime | None = None,
) -> E:
    """An event correlated by the incident itself rather than by its cause's correlation
    (the router's escalations and follow-ups): `causation_id` names the event that led to it,
    if one did."""
    return _envelope(
        cls,
        data,
        id=id,
        source=source,
        incident_id=incident_id,
        school_id=school_id,
        correlation_id=incident_id,
        causation_id=causation_id,
        now=now,
        actor=actor,
        occurred_at=occurred_at,
    )


def _envelope(
    cls: type[E],
    data: BaseModel,
    *,
    id: str,
    source: Source,
    incident_id: str,
    school_id: str,
    correlation_id: str,
    causation_id: str | None,
    now: datetime,
    actor: str,
    occurred_at: datetime | None,
) -> E:
    # `data` is checked against `cls`'s payload model by pydantic at construction; the
    # envelope's own fields are typed here, once.
    fields: dict[str, Any] = {
        "id": id,
        "source": source,
        "incident_id": incident_id,
        "school_id": school_id,
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "actor": actor,
        "data": data,
    }
    return cls(**fields)
