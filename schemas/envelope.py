"""Building event envelopes: the one place ids, correlation, causation, source and times are
filled in (DESIGN §4). Every service makes its events through `caused_by` or `originating`.
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
    fields: dict[str, Any] = {
        "id": id,
        "source": source,
        "incident_id": cause.incident_id,
        "school_id": cause.school_id,
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.id,
        "actor": actor,
        "data": data,
    }
    return cls(**fields)


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
    fields: dict[str, Any] = {
        "id": id,
        "source": source,
        "incident_id": incident_id,
        "school_id": school_id,
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "correlation_id": incident_id,
        "causation_id": None,
        "actor": actor,
        "data": data,
    }
    return cls(**fields)
