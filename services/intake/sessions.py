"""Signed-out staff sessions: signing out records the session's id as ended, and a cookie
whose session has ended is refused like an expired one.

Per session, not per school: signing out on one front-office computer leaves the school's
other devices signed in. The record lives in the DOORALERT_SESSIONS KV bucket (key: session
id, value: when the session would have expired); the bucket's TTL is the session lifetime
(`dooralert provision`), so a record is forgotten only once its cookie could no longer be
used anyway, and every intake instance sees it.
"""

from __future__ import annotations

import time
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.eventlog import SESSIONS_BUCKET


class EndedSessions(Protocol):
    """Which sessions were signed out."""

    async def end(self, sid: str, *, expires_at: int) -> None:
        """Record that session `sid` (valid until `expires_at`, unix seconds) has ended."""
        ...

    async def is_ended(self, sid: str) -> bool:
        """Whether session `sid` was signed out."""
        ...


class JetStreamEndedSessions:
    """Ended sessions in the DOORALERT_SESSIONS bucket (shared by every intake instance)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> JetStreamEndedSessions:
        """Bind to the bucket `dooralert provision` made (raises if it is missing)."""
        return cls(await js.key_value(SESSIONS_BUCKET))

    async def end(self, sid: str, *, expires_at: int) -> None:
        await self.kv.put(sid, str(expires_at).encode())

    async def is_ended(self, sid: str) -> bool:
        try:
            entry = await self.kv.get(sid)
        except KeyNotFoundError:
            return False
        return entry.value is not None


class MemoryEndedSessions:
    """Ended sessions in this process only: for an app given an in-memory event log (tests)."""

    def __init__(self) -> None:
        self._ended: dict[str, int] = {}

    async def end(self, sid: str, *, expires_at: int) -> None:
        now = time.time()
        self._ended = {k: v for k, v in self._ended.items() if v > now}
        self._ended[sid] = expires_at

    async def is_ended(self, sid: str) -> bool:
        return sid in self._ended
