"""Staff notes at intake: sealed under the incident's key before they reach the log, opened
for the incident's pages and API while the key exists (DESIGN §4, crypto-shredding)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from schemas.events import Event, SealedText
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


def memory_notes(retention_days: float) -> IntakeNotes:
    """Notes keys in this process (an app given an in-memory event log)."""
    return IntakeNotes(MemoryNoteKeys(), timedelta(days=retention_days))


def get_notes(request: Request) -> IntakeNotes:
    """The notes keys the lifespan opened."""
    notes: IntakeNotes | None = getattr(request.app.state, "notes", None)
    if notes is None:
        raise Unavailable
    return notes
