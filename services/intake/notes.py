"""Staff notes at intake: sealed under the incident's key before they reach the log, opened
for the incident's pages and API while the key exists (DESIGN §4, crypto-shredding)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi import Request

from schemas.events import Event, SealedText, new_event_id
from services.domain.incident import IncidentState
from services.domain.notes import reveal, sealed_notes
from services.domain.sealing import DataKey, decode_key, encode_key, new_key, seal
from services.eventlog.notekeys import MemoryNoteKeys, NoteKeyMaker
from services.intake.errors import Unavailable
from services.runtime.logging import get_logger

log = get_logger("dooralert.intake")


@dataclass(frozen=True)
class IntakeNotes:
    """The notes keys bucket and the retention (DOORALERT_NOTES_RETENTION_DAYS)."""

    keys: NoteKeyMaker
    retention: timedelta
    # Keys made ahead for new incidents (None: every key is made when its note arrives).
    ahead: KeysAhead | None = field(default=None, compare=False)

    @classmethod
    def with_keys_ahead(cls, keys: NoteKeyMaker, retention: timedelta) -> IntakeNotes:
        """Notes whose new incidents take a key made ahead (see `KeysAhead`)."""
        # Never held for more than a hundredth of the retention (a district keeping notes
        # an hour holds a key 36 s at most).
        max_age = min(60.0, retention.total_seconds() / 100)
        return cls(keys, retention, KeysAhead(keys, max_age=max_age))

    def new_incident(self) -> tuple[str, Sealer] | None:
        """A new incident's id and the sealer of its key, already stored; None when no key
        made ahead is at hand (then the caller makes one, `sealer`)."""
        if self.ahead is None:
            return None
        found = self.ahead.take()
        return None if found is None else (found[0], Sealer(found[1], found[0]))

    async def key(self, incident_id: str) -> DataKey | None:
        """The incident's key, None once forgotten or expired (or unreadable: fail closed)."""
        raw = await self.keys.get(incident_id)
        if raw is None:
            return None
        try:
            return decode_key(raw)
        except ValueError:
            log.error("notes.key_unreadable", incident=incident_id)
            return None

    async def sealer(self, incident_id: str, *, now: datetime, likely_new: bool = False) -> Sealer:
        """Seals this incident's notes (its key made now if it has none; `likely_new`: a
        report's incident, whose key is made without reading it first)."""
        fresh = encode_key(new_key(incident_id, now=now))
        raw = await self.keys.create_if_absent(incident_id, fresh, likely_new=likely_new)
        return Sealer(decode_key(raw), incident_id)

    async def reveal(self, state: IncidentState, events: list[Event]) -> IncidentState:
        """The state with notes opened while the key lasts, or marked removed."""
        sealed = any((found := sealed_notes(e)) and found[1] is not None for e in events)
        key = await self.key(state.incident_id) if sealed else None
        return reveal(state, events, key, now=datetime.now(UTC), retention=self.retention)


@dataclass(frozen=True)
class Sealer:
    """Seals one incident's notes for one event at a time (pure once the key is in hand)."""

    key: DataKey
    incident_id: str

    def __call__(self, text: str, *, event_id: str, field: str) -> SealedText:
        return seal(text, self.key, incident_id=self.incident_id, event_id=event_id, field=field)


class KeysAhead:
    """Notes keys made ahead, each under a fresh incident id, for reports with notes and no
    Idempotency-Key: such a report takes an id whose key is already stored (acknowledged), so
    its only round trip is its own append, and the keys are made several at a time, in one
    write. A key is taken at most `max_age` seconds after it was made (it was the incident's
    retention clock started that much early: negligible against days); older ones are left
    to expire unused, as are those left at shutdown: random bytes under an id nothing names.
    The stock is refilled only as it is used, so an idle intake makes none."""

    def __init__(
        self, keys: NoteKeyMaker, *, size: int = 8, max_age: float = 60.0, delay: float = 0.02
    ) -> None:
        self.keys = keys
        self.size = size
        self.max_age = max_age
        self.delay = delay
        self._ready: deque[tuple[float, str, DataKey]] = deque()
        self._filling: asyncio.Task[None] | None = None
        self._closed = False

    def take(self) -> tuple[str, DataKey] | None:
        """A fresh incident id and its stored key, if one is at hand; refills the stock once
        it is half used."""
        now = time.monotonic()
        found = None
        while self._ready and found is None:
            made, incident_id, key = self._ready.popleft()
            if now - made <= self.max_age:
                found = incident_id, key
        if len(self._ready) <= self.size // 2:
            self._fill()
        return found

    def _fill(self) -> None:
        if self._closed:
            return  # a report served during shutdown makes its own key
        if self._filling is None or self._filling.done():
            self._filling = asyncio.get_running_loop().create_task(self._make())

    async def _make(self) -> None:
        # After the report that used the stock up has been answered: its own append and
        # answer go first, and these writes and acknowledgements come in the lull after.
        await asyncio.sleep(self.delay)
        wanted = self.size - len(self._ready)
        made = await asyncio.gather(*(self._one() for _ in range(wanted)), return_exceptions=True)
        failed = [m for m in made if isinstance(m, BaseException)]
        if failed:
            # Reports then make their keys themselves (and answer 503 if they cannot).
            log.warning("notes.keys_ahead_failed", error=type(failed[0]).__name__)

    async def _one(self) -> None:
        made = time.monotonic()  # its age counts from before the key was made
        incident_id = new_event_id()
        fresh = encode_key(new_key(incident_id, now=datetime.now(UTC)))
        raw = await self.keys.create_if_absent(incident_id, fresh, likely_new=True)
        self._ready.append((made, incident_id, decode_key(raw)))

    async def close(self) -> None:
        """Stop making keys (those made stay unused and expire), for good."""
        self._closed = True
        if self._filling is not None and not self._filling.done():
            self._filling.cancel()
            await asyncio.gather(self._filling, return_exceptions=True)


def memory_notes(retention_days: float) -> IntakeNotes:
    """Notes keys in this process (an app given an in-memory event log)."""
    return IntakeNotes(MemoryNoteKeys(), timedelta(days=retention_days))


def get_notes(request: Request) -> IntakeNotes:
    """The notes keys the lifespan opened."""
    notes: IntakeNotes | None = getattr(request.app.state, "notes", None)
    if notes is None:
        raise Unavailable
    return notes
