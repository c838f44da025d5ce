"""The `EventLog` interface: everything a service does with the log, in the log's own terms.

Services depend on this protocol, not on nats-py; `JetStreamEventLog` (jetstream.py) is the
real one and the service tests' fakes implement the same methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas.events import Event, parse_stored


@dataclass(frozen=True)
class Appended:
    """What the log said to an append: the stream sequence, and whether it already had the
    event (the same id within the duplicate window: nothing new was stored)."""

    seq: int
    duplicate: bool = False


@dataclass(frozen=True)
class StoredMessage:
    """One DOORALERT message exactly as stored."""

    seq: int
    subject: str
    time: datetime
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def event(self) -> Event:
        """The typed event; raises `EventDecodeError` if unreadable, `SubjectMismatch` (one)
        if the payload is not what the subject says."""
        return parse_stored(self.data, self.subject)


class Tail(Protocol):
    """A long-lived cursor over some subjects of the log."""

    async def read_new(self) -> list[StoredMessage]:
        """The messages stored since the previous call, in stream order (the first call:
        those stored at or after the tail's start). Raises `TailReset` if it lost its place."""
        ...

    async def close(self) -> None:
        """Let go of the cursor (its consumer would expire by itself)."""
        ...


class TailReset(Exception):
    """A tail lost its place; start a new one."""


class IncompleteRead(Exception):
    """A read of the log stopped before every stored message arrived; try again."""


class EventLog(Protocol):
    """The append-only event log (DESIGN §3)."""

    async def append(self, event: Event) -> Appended:
        """Store one event, retried with its id as the dedup key until the log answers."""
        ...

    async def append_all(self, events: Sequence[Event]) -> None:
        """Store a head event, then the events that follow from it (pipelined): the head is
        stored before any of the rest. Raises if any finally fails."""
        ...

    async def read_incident(self, incident_id: str) -> list[Event]:
        """Every readable event of one incident, in log order (unreadable ones skipped)."""
        ...

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        """The stored bytes of the incident's last event of `event_type`, or None."""
        ...

    def tail(self, subjects: Sequence[str], *, since: datetime) -> Tail:
        """A cursor over `subjects` from `since` on."""
        ...

    async def schedule(
        self, subject: str, payload: bytes, *, fire_at: datetime, target: str, msg_id: str
    ) -> None:
        """A durable one-shot timer: `payload` is delivered on `target` at `fire_at` (whole
        seconds, UTC), surviving restarts; the same `msg_id` is scheduled once."""
        ...
