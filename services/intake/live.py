"""The incident page's live status: one shared poller per incident, and caps on open streams.

However many people watch an incident, one task reads its events from the log every
`poll_seconds` and hands the new state to every viewer; it stops when the last viewer leaves.
Open streams are capped per link token (or staff session) and per client address, so a leaked
link or one client cannot hold hundreds of connections open.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.domain.incident import IncidentState
from services.intake.errors import Unavailable
from services.runtime.logging import get_logger

log = get_logger("dooralert.intake")

Reader = Callable[[], Awaitable[IncidentState | None]]


class LiveLimited(Exception):
    """Too many live streams are open for this token (`which="token"`) or address."""

    def __init__(self, which: str, cap: int) -> None:
        super().__init__(f"too many live streams open for this {which} (at most {cap})")
        self.which, self.cap = which, cap


@dataclass
class Watch:
    """One incident's shared state: the latest projection, bumped `version` on each change."""

    incident_id: str
    state: IncidentState
    version: int = 0
    unreachable: bool = False  # the last read failed: the log is unreachable
    closed: bool = False  # the poller stopped: viewers end their streams (browsers reconnect)
    viewers: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def publish(self, state: IncidentState | None, *, unreachable: bool = False) -> None:
        """Record what the last read found and wake every viewer."""
        if state is not None:
            self.state = state
        self.unreachable = unreachable
        self.version += 1
        # A fresh event per change: each viewer waits on the one it saw, so none misses one.
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()


@dataclass
class Lease:
    """One open stream's place under the caps; `release()` is safe to call more than once."""

    hub: LiveHub
    token_key: str
    client: str
    released: bool = False

    def release(self) -> None:
        """Give the place back (the stream ended, or never started)."""
        if not self.released:
            self.released = True
            self.hub._give_back(self)


class LiveHub:
    """The shared pollers of one app, and the open-stream counts the caps apply to."""

    def __init__(self, *, poll_seconds: float, per_token: int, per_client: int) -> None:
        self.poll_seconds = poll_seconds
        self.per_token, self.per_client = per_token, per_client
        self._watches: dict[str, Watch] = {}
        self._by_token: Counter[str] = Counter()
        self._by_client: Counter[str] = Counter()

    @property
    def pollers(self) -> int:
        """How many incidents are being polled now."""
        return len(self._watches)

    def lease(self, *, token: str, client: str) -> Lease:
        """A place for one more stream; `LiveLimited` when a cap is reached."""
        # Hashed: the key may be a link token, which must not sit around in memory as is.
        token_key = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]
        if self.per_token > 0 and self._by_token[token_key] >= self.per_token:
            raise LiveLimited("link", self.per_token)
        if self.per_client > 0 and self._by_client[client] >= self.per_client:
            raise LiveLimited("address", self.per_client)
        self._by_token[token_key] += 1
        self._by_client[client] += 1
        return Lease(self, token_key, client)

    def _give_back(self, lease: Lease) -> None:
        for counts, key in ((self._by_token, lease.token_key), (self._by_client, lease.client)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]

    @asynccontextmanager
    async def watch(self, first: IncidentState, read: Reader) -> AsyncIterator[Watch]:
        """The incident's shared watch for as long as the block runs (started by the first
        viewer with `read`, stopped when the last one leaves)."""
        w = self._watches.get(first.incident_id)
        if w is None or w.closed:
            w = Watch(first.incident_id, first)
            self._watches[first.incident_id] = w
            w.task = asyncio.create_task(self._poll(w, read), name=f"live:{first.incident_id}")
        elif first.event_count > w.state.event_count:
            # This viewer read a newer state than the poller has yet: published, so the
            # viewers already watching see it too (set silently, the poller would find
            # nothing new and they would miss the change, say the all-clear pressed by the
            # staff member whose page is now opening).
            w.publish(first)
        w.viewers += 1
        try:
            yield w
        finally:
            w.viewers -= 1
            if w.viewers == 0 and self._watches.get(w.incident_id) is w:
                del self._watches[w.incident_id]
                if w.task is not None:
                    w.task.cancel()

    async def _poll(self, w: Watch, read: Reader) -> None:
        try:
            while True:
                await asyncio.sleep(self.poll_seconds)
                try:
                    state = await read()
                except Unavailable:
                    w.publish(None, unreachable=True)
                    continue
                if state is not None and (state != w.state or w.unreachable):
                    w.publish(state)
        except Exception as exc:  # a bug: say so, and end the streams (browsers reconnect)
            log.exception("live.poller_failed", incident=w.incident_id, error=type(exc).__name__)
        finally:
            w.closed = True
            w.publish(None, unreachable=w.unreachable)
            if self._watches.get(w.incident_id) is w:
                del self._watches[w.incident_id]
