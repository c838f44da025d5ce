"""Cross-school pattern detection, off the report path.

The report handler only wakes the detector (`PatternDetector.wake`, no I/O); the detector
reads what was stored since its last read (the reports and the pattern events within reach
of the longest window: one round trip) and evaluates, for each encounter in stream
order, the window that ends at that encounter's stored time. A burst of 600 reports costs a
handful of reads, not 600, and a read never delays an alert: reports are decided, stored
and acked without waiting for it, including the first read after a start, which reads back
the last windows' reports.

Evaluating each encounter's own window (not "the window ending when the detector looked")
makes the result independent of how far detection lags: the pattern is detected at the
encounter that completes it, naming exactly the encounters in its window, with the same id
(derived from them) in every router instance and after every restart, so the server keeps
one. Each pattern is detected once a window: a detection found is kept in memory before it is
published, and earlier ones are read back from the log.

Failure is loud and retried, never a skipped pattern: a read or publish that fails is logged
(`pattern.detection_failed`, with the exception) and the same encounters are evaluated
again after a backoff, the events found but not stored published first (a detection whose
head was stored but not its alerts would otherwise be blocked by its own head). After a
restart (or a lost tail) the detector starts from the log: it reads back twice the longest
window and evaluates every encounter whose window lies wholly within what it read, the
once-a-window check against the pattern events stored suppressing those already detected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from schemas.events import Event, EventDecodeError, PatternDetected, SubjectMismatch
from services.domain.directory import Directory
from services.eventlog import SUBJECT_PREFIX, EventLog, StoredMessage, Tail, TailReset
from services.router.escalate import Sighting, detect_pattern
from services.router.rules import Pattern
from services.runtime.logging import get_logger
from services.runtime.metrics import PATTERN_DETECTION_FAILURES

log = get_logger("dooralert.router.patterns")

REPORTS = f"{SUBJECT_PREFIX}.*.*.encounter.reported"
PATTERNS = f"{SUBJECT_PREFIX}.district.*.pattern.detected"
SUBJECTS = (REPORTS, PATTERNS)
# Stream times are the server's clock: a few seconds backwards (an NTP step, a new stream
# leader) must not make the cheap pre-count skip an encounter its exact check would count.
SLACK = timedelta(seconds=60)
# Encounters evaluated between yields to the event loop, so a long catch-up after a start
# never holds up the report handler.
YIELD_EVERY = 200


class PatternDetector:
    """Detects `patterns` over the reports stored in the log, in the background (see the
    module docstring). `start()` once the event log is connected, `wake(seq)` after each
    report, `close()` before the connection closes."""

    def __init__(
        self,
        patterns: Sequence[Pattern],
        *,
        directory: Directory,
        event_log: Callable[[], EventLog],
        min_interval: float = 0.05,
        retry_max: float = 30.0,
    ) -> None:
        self.directory = directory
        self._event_log = event_log
        self.min_interval, self.retry_max = min_interval, retry_max
        self._patterns = [(p, p.window) for p in patterns]  # parsed once
        self._reach = max(w for _, w in self._patterns)
        self._tails: list[Tail] = []  # reports, pattern events
        self._since: datetime | None = None  # the first read's start: windows before it unread
        self._last_read: datetime | None = None  # when the last read that succeeded began
        # Reports read and not evaluated yet, in stream order: (stream seq, sighting).
        self._sightings: deque[tuple[int, Sighting]] = deque()
        # Each pattern's window over the reports evaluated, slid along as they are.
        self._windows = [_Window(p, w) for p, w in self._patterns]
        self._added = 0  # seq of the last report added to the windows
        self._prior: dict[str, PatternDetected] = {}  # by event id: read back or found here
        self._unpublished: list[Event] = []  # found, not yet stored: published first
        self._evaluated: int | None = None  # seq of the last report evaluated (None: none yet)
        self._read_upto = 0  # highest report seq read
        self._wanted = 0  # highest report seq a wake asked for
        self._force = False  # read even if no wake asked for an unread report
        self._caught_up = False  # a round finished: later unread windows are errors
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.TimerHandle | None = None
        self.detected = 0  # patterns this detector published (for tests and logs)
        self.failures = 0  # consecutive failed rounds

    # --- driving ------------------------------------------------------------------------

    def wake(self, seq: int | None = None) -> None:
        """A report was stored at stream sequence `seq` (None: unknown): evaluate it soon.
        No-op when a read already returned it."""
        if seq is None:
            self._force = True
        elif seq <= self._read_upto:
            return
        else:
            self._wanted = max(self._wanted, seq)
        self._wake.set()

    def start(self, catch_up_after: float = 2.0) -> None:
        """Run in the background. The first round, which reads back the last windows and
        catches up on them, runs `catch_up_after` seconds after the start (the service is
        ready first, its start-up CPU its own), or at the first report if one comes sooner."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pattern-detector")
            self._task.add_done_callback(self._ended)
            self._kick = asyncio.get_running_loop().call_later(catch_up_after, self.wake)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The detector never stops silently: a task that ended while not closing (a round's
        failures are retried inside it, so only something unforeseen) is logged, counted and
        started again, catching up from the log."""
        if self._closing.is_set() or self._task is not task:
            return
        error = "cancelled" if task.cancelled() else repr(task.exception())
        log.error("pattern.detector_stopped", error=error)
        PATTERN_DETECTION_FAILURES.inc()
        self._task = None
        if self._kick is not None:
            self._kick.cancel()
        self.start(catch_up_after=1.0)

    async def close(self, grace: float = 5.0) -> None:
        """Stop, letting a round in progress finish for up to `grace` seconds (a detection's
        alerts are stored with it, not left for a restart whose catch-up would find its
        head stored and stop there), and let go of the tail. What is left undetected, the
        next start catches up on."""
        self._closing.set()
        self._wake.set()
        if self._kick is not None:
            self._kick.cancel()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not task.done() or (current is not None and current.cancelling()):
                    raise  # this close was cancelled, not only the detector
            except Exception:
                # Its failure must not keep the broker from draining.
                log.exception("pattern.detector_failed_at_close")
        await self._drop_tail()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._closing.is_set():
                return
            self._wake.clear()
            if not self._force and self._wanted <= self._read_upto:
                continue  # every report a wake asked for was in an earlier read
            self._force = False
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Loud, and retried: the same reports are evaluated again (nothing is
                # marked evaluated until its detections are stored).
                self.failures += 1
                PATTERN_DETECTION_FAILURES.inc()
                delay = min(self.retry_max, 0.25 * 2 ** min(self.failures, 10))
                log.exception("pattern.detection_failed", attempt=self.failures, retry_in=delay)
                self._force = True
                await self._pause(delay)
                self._wake.set()
                continue
            self.failures = 0
            if self.min_interval > 0:
                # A burst's reports are read together rather than one read per report.
                await self._pause(self.min_interval)

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or until `close`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # --- one round ----------------------------------------------------------------------

    async def run_once(self) -> int:
        """Publish what an earlier round found but could not store, read what is new and
        evaluate each report not evaluated yet; the number of patterns detected. Raises
        (the caller retries) if the log cannot be read or written."""
        if self._unpublished:
            await self._event_log().append_all(self._unpublished)
            self._unpublished = []
        self._take(await self._read())
        found = unreadable = done = 0
        while self._sightings:
            seq, sighting = self._sightings[0]
            if seq > self._added:
                for w in self._windows:
                    w.add(sighting)
                self._added = seq
            for w in self._windows:
                start = sighting.recorded_at - w.window
                if self._since is not None and start < self._since:
                    unreadable += 1  # its window began before what the tail read
                    continue
                events = self._evaluate(w, sighting, start)
                if events:
                    await self._publish(w.pattern, events)
                    found += 1
            self._evaluated = seq
            self._sightings.popleft()
            done += 1
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if unreadable and self._caught_up:
            # Only after a lost tail with detection lagging by more than the longest window:
            # say so, never pass silently.
            log.error("pattern.window_unread", evaluations=unreadable)
        self._caught_up = True
        self._trim()
        return found

    def _evaluate(self, w: _Window, sighting: Sighting, start: datetime) -> list[Event]:
        """The detection the window ending at `sighting` completes, if any (cheap checks
        first: once a window, then the count)."""
        pattern = w.pattern
        w.slide(start)
        if any(
            p.data.pattern == pattern.name and p.occurred_at > start for p in self._prior.values()
        ):
            return []
        if w.count() < pattern.min_encounters:
            return []
        return detect_pattern(
            pattern,
            w.sightings(),
            list(self._prior.values()),
            directory=self.directory,
            now=datetime.now(UTC),
            at=sighting.recorded_at,
        )

    async def _publish(self, pattern: Pattern, events: list[Event]) -> None:
        detected = events[0]
        if isinstance(detected, PatternDetected):
            # Known before it is stored: the next windows never detect it again, even if
            # storing fails (it is then retried first, as it is).
            self._prior[detected.id] = detected
        self._unpublished = events
        await self._event_log().append_all(events)
        self._unpublished = []
        self.detected += 1
        log.warning(
            "pattern.detected",
            pattern=pattern.name,
            incidents=len(detected.data.incident_ids)
            if isinstance(detected, PatternDetected)
            else None,
        )

    # --- the log ------------------------------------------------------------------------

    async def _read(self) -> list[StoredMessage]:
        """What was stored since the last read: reports, then pattern events.

        Two tails of one subject each, read together (their pull requests share one flush
        and one round trip), rather than one tail of both subjects, which first asks the
        stream's last sequence (one more round trip per read) to cut both subjects at the
        same point. No cut is needed here: a pattern event read ahead of the reports only
        blocks what its own detection blocks (another router instance evaluates the same
        reports in the same order, so it detects what this one detects, with the same id).
        """
        for attempt in (1, 2):
            if not self._tails:
                now = datetime.now(UTC)
                if self._last_read is None:
                    # Start-up: the windows of the last reach, and what they reach back to.
                    self._since = since = now - 2 * self._reach
                else:
                    # A lost tail: from the last read on. What came before is in memory
                    # (the windows, the reports not evaluated yet, the pattern events).
                    since = self._last_read - SLACK
                log_ = self._event_log()
                self._tails = [log_.tail([subject], since=since) for subject in SUBJECTS]
            began = datetime.now(UTC)
            try:
                got = await asyncio.gather(
                    *(t.read_new() for t in self._tails), return_exceptions=True
                )
                for result in got:
                    if isinstance(result, BaseException):
                        raise result
                self._last_read = began
                return [m for result in got if isinstance(result, list) for m in result]
            except TailReset as exc:
                await self._drop_tail()
                if attempt == 2:
                    raise
                log.warning("pattern.tail_reset", reason=str(exc))
        raise AssertionError("unreachable")

    def _take(self, messages: list[StoredMessage]) -> None:
        for m in messages:
            if m.subject.endswith(".encounter.reported"):
                if m.seq <= self._read_upto:
                    continue  # a new tail's read back: held already
                parts = m.subject.split(".")
                self._sightings.append(
                    (m.seq, Sighting(incident_id=parts[2], school_id=parts[1], recorded_at=m.time))
                )
                self._read_upto = max(self._read_upto, m.seq)
                continue
            try:
                event = m.event()
            except SubjectMismatch as exc:
                log.error("event.subject_mismatch", seq=m.seq, subject=m.subject, reason=str(exc))
                continue
            except EventDecodeError:
                log.warning("event.unreadable", seq=m.seq, subject=m.subject)
                continue
            if isinstance(event, PatternDetected):
                self._prior.setdefault(event.id, event)

    def _trim(self) -> None:
        """Forget the pattern events no later window reaches."""
        if self._sightings or not self._windows[0].items:
            return
        cut = self._windows[0].items[-1].recorded_at - self._reach - SLACK
        stale = [k for k, p in self._prior.items() if p.occurred_at < cut]
        for k in stale:
            del self._prior[k]

    async def _drop_tail(self) -> None:
        tails, self._tails = self._tails, []
        for tail in tails:
            try:
                await tail.close()
            except Exception:  # noqa: BLE001 - its consumers expire by themselves
                pass


class _Window:
    """One pattern's window: the reports evaluated whose stored time it may still reach, in
    stream order, with their count (per school when the pattern counts schools). Only a
    pre-check: `detect_pattern` decides on exactly the reports stored within the window."""

    def __init__(self, pattern: Pattern, window: timedelta) -> None:
        self.pattern, self.window = pattern, window
        self.items: deque[Sighting] = deque()
        self.schools: Counter[str] = Counter()

    def add(self, sighting: Sighting) -> None:
        self.items.append(sighting)
        self.schools[sighting.school_id] += 1

    def slide(self, start: datetime) -> None:
        """Let go of the reports stored before `start` (less SLACK)."""
        while self.items and self.items[0].recorded_at < start - SLACK:
            gone = self.items.popleft()
            self.schools[gone.school_id] -= 1
            if not self.schools[gone.school_id]:
                del self.schools[gone.school_id]

    def count(self) -> int:
        """At least the encounters the window holds (by school when those count)."""
        return len(self.schools) if self.pattern.distinct_schools else len(self.items)

    def sightings(self) -> list[Sighting]:
        return list(self.items)
