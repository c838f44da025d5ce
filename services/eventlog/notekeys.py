"""The incidents' notes keys (crypto-shredding): one data key per incident in the
DOORALERT_NOTE_KEYS KV bucket, whose max age is the notes' retention. Destroying or expiring
a key forgets that incident's sealed notes everywhere; the log itself is never touched.

Intake creates a key on the first note of an incident (create-if-absent: two intake
instances racing both end up with the one key); notifier, ledger and auditors read; only admin
(`dooralert audit forget`) deletes.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue, _is_key_valid

from services.eventlog.contract import NOTE_KEYS_BUCKET
from services.eventlog.direct import (
    LeaderCheckedKeyValue,
    consistent_key_value,
    read_key_direct,
)
from services.eventlog.retry import retrying
from services.runtime.logging import get_logger

log = get_logger("dooralert.eventlog")


class NoteKeys(Protocol):
    """Where incidents' notes keys live (opaque bytes here: services.domain.sealing reads them)."""

    async def get(self, incident_id: str) -> bytes | None:
        """The incident's key, or None once it was forgotten or expired (or never made)."""
        ...

    async def create_if_absent(self, incident_id: str, value: bytes) -> bytes:
        """The incident's key: `value` stored now if it has none, else the one it has."""
        ...

    async def forget(self, incident_id: str) -> bool:
        """Destroy the incident's key (every revision); whether there was one."""
        ...


class NoteKeyMaker(NoteKeys, Protocol):
    """Notes keys as intake makes them: it can say that an incident is most likely new."""

    async def create_if_absent(
        self, incident_id: str, value: bytes, *, likely_new: bool = False
    ) -> bytes:
        """The incident's key: `value` stored now if it has none, else the one it has.
        `likely_new` (an incident just reported): try to create the key before reading it,
        one round trip instead of two when it has none (three when it has one)."""
        ...


class JetStreamNoteKeys:
    """Notes keys in the DOORALERT_NOTE_KEYS bucket `dooralert provision` made."""

    def __init__(self, kv: KeyValue, *, retry_for: float = 10.0) -> None:
        self.kv = kv
        self.retry_for = retry_for

    @classmethod
    async def open(cls, js: JetStreamContext, *, retry_for: float = 10.0) -> JetStreamNoteKeys:
        """Bind to the bucket (raises if it is missing: run `dooralert provision`): with
        direct gets while it has one replica and they answer, from the stream leader once they
        stop (direct.ConsistentKeyValue, as the delivery records: no restart needed when an
        operator turns them off or a provision adds replicas)."""
        return cls(await consistent_key_value(js, NOTE_KEYS_BUCKET), retry_for=retry_for)

    async def get(self, incident_id: str) -> bytes | None:
        kv: Any = self.kv
        lean = (
            getattr(kv, "_direct", False)
            and not isinstance(kv, LeaderCheckedKeyValue)
            and _is_key_valid(incident_id)
        )

        async def read() -> bytes | None:
            nonlocal lean
            if lean:
                # The bucket allows direct gets only with one replica, the leader
                # (contract.bucket_allows_direct): read as the delivery records read theirs.
                try:
                    return await read_key_direct(kv, incident_id) or None
                except NoRespondersError:
                    # Direct gets turned off since the bucket was bound: from now on as
                    # KeyValue.get reads, which (ConsistentKeyValue) finds the same and turns
                    # to the stream leader.
                    lean = False
            try:
                entry = await self.kv.get(incident_id)
            except KeyNotFoundError:
                return None
            return entry.value or None

        return await retrying(read, retry_for=self.retry_for, what="notes.key_get")

    async def create_if_absent(
        self, incident_id: str, value: bytes, *, likely_new: bool = False
    ) -> bytes:
        async def create() -> int:
            # A key forgotten before (a tombstone) is made again too: kv.create handles it.
            return await self.kv.create(incident_id, value)

        for attempt in range(3):
            if not (likely_new and attempt == 0):
                found = await self.get(incident_id)
                if found is not None:
                    return found
            try:
                await retrying(create, retry_for=self.retry_for, what="notes.key_create")
            except KeyWrongLastSequenceError:
                continue  # another intake instance made it first: read theirs
            return value
        raise RuntimeError(f"could not create or read the notes key of incident {incident_id}")

    async def forget(self, incident_id: str) -> bool:
        had = await self.get(incident_id) is not None

        # purge drops every revision, so no history of the key survives in the bucket.
        async def purge() -> None:
            await self.kv.purge(incident_id)

        await retrying(purge, retry_for=self.retry_for, what="notes.key_purge")
        return had


class MemoryNoteKeys:
    """Notes keys in this process only (tests and apps given an in-memory event log)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def get(self, incident_id: str) -> bytes | None:
        return self.keys.get(incident_id)

    async def create_if_absent(
        self, incident_id: str, value: bytes, *, likely_new: bool = False
    ) -> bytes:
        return self.keys.setdefault(incident_id, value)

    async def forget(self, incident_id: str) -> bool:
        return self.keys.pop(incident_id, None) is not None


def retention_seconds(days: float) -> float:
    """The bucket's max age for a retention of `days` (0 or less: refused, keys must expire)."""
    if not math.isfinite(days) or days <= 0:
        raise ValueError("DOORALERT_NOTES_RETENTION_DAYS must be a positive number of days")
    return days * 86400.0
