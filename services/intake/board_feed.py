"""The district board's view of the log: one tail over the events a board row needs, folded
per incident, shared by every viewer of the board.

The tail reads only the subjects that change a row (reports, updates, acknowledgements,
resolutions, escalations, pattern alerts), never the notifications, from the start of the
board's window; each refresh costs one round trip plus the new messages. However many people
watch the board, one task refreshes it every `poll_seconds` while anyone watches, and wakes
every viewer when something changed. A tail that lost its place is started again from the
window's start (the board is then rebuilt whole).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from schemas.events import EventDecodeError, PatternDetected
from services.domain.board import BoardRow, PatternAlert, add_pattern, open_board
from services.domain.incident import IncidentState, evolve
from services.eventlog.interface import EventLog, Tail, TailReset
from services.intake.errors import LOG_FAILURES, Unavailable
from services.runtime.logging import get_logger

log = get_logger("dooralert.intake")

PREFIX = "dooralert"
ROW_EVENTS = (
    "encounter.reported",
    "encounter.updated",
    "incident.acknowledged",
    "incident.resolved",
    "incident.reopened",
    "escalation.decided",
    "escalation.raised",
)
READ_FAILURES: tuple[type[BaseException], ...] = (Unavailable, *LOG_FAILURES)
SUBJECTS = [f"{PREFIX}.*.*.{t}" for t in ROW_EVENTS] + [f"{PREFIX}.district.*.pattern.detected"]


class BoardFeed:
    """The open incidents as the log has them, refreshed on demand or by a shared poller."""

    def __init__(
        self,
        event_log: Callable[[], EventLog],
        *,
        window: timedelta,
        poll_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._event_log, self.window, self.poll_seconds = event_log, window, poll_seconds
        self._clock = clock
        self._tail: Tail | None = None
        self._states: dict[str, IncidentState] = {}
        self._patterns: dict[str, list[PatternAlert]] = {}
        self._lock = asyncio.Lock()
        self.version = 0  # bumped whenever the rows or reachability change
        self.unreachable = False
        self.changed = asyncio.Event()
        self.viewers = 0
        self._task: asyncio.Task[None] | None = None

    def rows(self) -> list[BoardRow]:
        """The open incidents within the window, in board order."""
        return open_board(
            self._states.values(), self._patterns, now=self._clock(), window=self.window
        )

    async def refresh(self) -> bool:
        """Read what the log stored since the last refresh; whether anything changed. On a
        log failure the feed is marked unreachable (and the rows kept as they were)."""
        async with self._lock:
            try:
                try:
                    changed = await self._read()
                except TailReset:
                    # Lost its place (most often: its consumer expired while nobody looked at
                    # the board): rebuild from the window's start at once, not a stale page.
                    await self._drop_tail()
                    await self._read()
                    changed = True  # rebuilt whole: what it dropped may differ
                was, self.unreachable = self.unreachable, False
            except READ_FAILURES as exc:
                log.warning("board.not_read", error=type(exc).__name__)
                await self._drop_tail()
                was, self.unreachable, changed = self.unreachable, True, False
            if changed or was != self.unreachable:
                self._wake()
                return True
            return False

    async def _read(self) -> bool:
        if self._tail is None:
            since = self._clock() - self.window
            self._tail = self._event_log().tail(SUBJECTS, since=since)
            self._states, self._patterns = {}, {}
        messages = await self._tail.read_new()
        for message in messages:
            try:
                event = message.event()
            except EventDecodeError as exc:  # not what its subject says, or unreadable
                log.warning("board.event_skipped", seq=message.seq, error=type(exc).__name__)
                continue
            if isinstance(event, PatternDetected):
                add_pattern(self._patterns, event)
                continue
            state = self._states.get(event.incident_id)
            if state is not None and state.school_id != event.school_id:
                continue  # the same id at another school is never folded in (DESIGN §4)
            self._states[event.incident_id] = evolve(state, event)
        self._forget_old()
        return bool(messages)

    def _forget_old(self) -> None:
        # Those reported before the window and those whose report was not read (begun before
        # the window) leave memory: the board never shows them. Resolved ones stay (hidden):
        # an all-clear can be withdrawn (`incident.reopened`), and the row must come back.
        since = self._clock() - self.window
        for incident_id, s in list(self._states.items()):
            if s.reported_at is None or s.reported_at < since:
                del self._states[incident_id]
        for incident_id in set(self._patterns) - set(self._states):
            del self._patterns[incident_id]

    async def _drop_tail(self) -> None:
        tail, self._tail = self._tail, None
        if tail is not None:
            try:
                await tail.close()
            except Exception:  # noqa: BLE001 - its consumer expires by itself
                pass

    def _wake(self) -> None:
        self.version += 1
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[BoardFeed]:
        """The feed kept fresh by the shared poller while the block runs (started by the
        first viewer, stopped when the last leaves)."""
        self.viewers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="live:board")
        try:
            yield self
        finally:
            self.viewers -= 1
            if self.viewers == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    async def _poll(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.poll_seconds)
                await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say so; viewers see no change and reconnect later
            log.exception("board.poller_failed", error=type(exc).__name__)

    async def close(self) -> None:
        """Stop the poller and let go of the tail."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self._drop_tail()
