"""Escalation deadlines: durable one-shot timers on DOORALERT_TIMERS (DESIGN §3).

A deadline is scheduled when a decision requires acknowledgement; when it fires, the
`router-timers` consumer hands the router the incident and tier to re-decide. Timers live
outside the event log because a fired schedule message is removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.events import derive_id
from services.eventlog import TIMER_FIRED_PREFIX, TIMER_SCHEDULE_PREFIX, EventLog


@dataclass(frozen=True)
class Deadline:
    """Tier `tier` of an incident's escalation is due at `at`."""

    school_id: str
    incident_id: str
    tier: int
    at: datetime
    # How many times the incident was reopened when this was armed: a reopened incident's
    # deadlines are new timers, never dropped as duplicates of the round before's.
    round: int = 0


class DeadlineUnreadable(ValueError):
    """A fired timer's payload is not a deadline this router wrote."""


def fire_time(at: datetime, *, now: datetime) -> datetime:
    """When the schedule fires: whole seconds, rounded up, and never in the past (the router
    may be catching up)."""
    return max(at, now + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)


def encode(deadline: Deadline) -> bytes:
    """The timer's payload: what `decode` reads back when it fires."""
    return json.dumps(
        {
            "incident_id": deadline.incident_id,
            "school_id": deadline.school_id,
            "tier": deadline.tier,
            "deadline": deadline.at.isoformat(),
        }
    ).encode()


def decode(payload: bytes) -> tuple[str, str, int]:
    """(school id, incident id, tier) of a fired timer; `DeadlineUnreadable` otherwise."""
    try:
        timer = json.loads(payload)
        school_id, incident_id, tier = timer["school_id"], timer["incident_id"], int(timer["tier"])
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
        # Also JSON nested deeper than the recursion limit, and a tier of infinity (`1e400`).
        raise DeadlineUnreadable(str(exc)) from exc
    if not (isinstance(school_id, str) and isinstance(incident_id, str)):
        raise DeadlineUnreadable("wrong field types")
    return school_id, incident_id, tier


async def schedule(log: EventLog, deadline: Deadline, *, now: datetime) -> None:
    """Arm `deadline`; it survives restarts of every service, and arming the same tier of the
    same incident twice schedules it once."""
    key = f"{deadline.school_id}.{deadline.incident_id}.{deadline.tier}"
    ids = [deadline.incident_id, "timer", str(deadline.tier)]
    if deadline.round:
        key += f".r{deadline.round}"
        ids.append(f"r{deadline.round}")
    await log.schedule(
        f"{TIMER_SCHEDULE_PREFIX}.{key}",
        encode(deadline),
        fire_at=fire_time(deadline.at, now=now),
        target=f"{TIMER_FIRED_PREFIX}.{key}",
        msg_id=derive_id(*ids),
    )
