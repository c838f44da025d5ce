"""Pattern detection off the report path (services/router/patterns.py), on a `FakeEventLog`:
the same patterns however far detection lags, once a window, retried when it fails, caught up
after a restart, and never in the way of a report.

Against a real nats-server: tests/integration/test_escalation.py (two schools, one alert).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from schemas.events import EncounterReported, PatternDetected, parse_event
from services.domain.directory import load_directory
from services.eventlog.interface import StoredMessage, TailReset
from services.intake.reports import encounter_event, parse_report
from services.router.main import Router
from services.router.patterns import PatternDetector
from services.router.rules import Rules
from services.runtime.metrics import PATTERN_DETECTION_FAILURES
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog, FakeMessage, FakeTail
from tests.support import EXAMPLES, report

DIRECTORY = load_directory(EXAMPLES)
SCHOOLS = ["hamline", "lincoln-park", "school-c", "school-d", "school-e", "school-f"]
RULES = Rules.model_validate(
    yaml.safe_load("""
version: 1
routes: [{name: all, match: {}, notify: [law]}]
patterns:
  - {name: multi, min_encounters: 3, within: 60m, notify: [leadership]}
  - {name: busy, min_encounters: 4, distinct_schools: false, within: 10m, notify: [leadership]}
""")
)


def stored_report(log: FakeEventLog, school: str, incident: str, at: datetime) -> int:
    """A report as the log stored it (detection reads only its subject and stored time)."""
    seq = len(log.messages) + 1
    log.messages.append(
        StoredMessage(
            seq=seq, subject=f"dooralert.{school}.{incident}.encounter.reported", time=at, data=b""
        )
    )
    return seq


def detections(log: FakeEventLog) -> list[PatternDetected]:
    return [
        e
        for m in log.messages
        if m.subject.endswith(".pattern.detected")
        and isinstance(e := parse_event(m.data), PatternDetected)
    ]


def detector(log: FakeEventLog, **kw: Any) -> PatternDetector:
    return PatternDetector(RULES.patterns, directory=DIRECTORY, event_log=lambda: log, **kw)


def burst(log: FakeEventLog, n: int, *, start: datetime, every: timedelta) -> list[int]:
    return [
        stored_report(log, SCHOOLS[i % len(SCHOOLS)], f"inc-{i}", start + i * every)
        for i in range(n)
    ]


async def test_a_lagging_detector_finds_exactly_what_one_read_per_report_finds() -> None:
    start = datetime.now(UTC) - timedelta(minutes=30)
    per_report, lagging = FakeEventLog(), FakeEventLog()
    eager = detector(per_report)
    for i in range(12):
        stored_report(per_report, SCHOOLS[i % 6], f"inc-{i}", start + i * timedelta(seconds=30))
        await eager.run_once()
    burst(lagging, 12, start=start, every=timedelta(seconds=30))
    assert await detector(lagging).run_once() == 2  # one read for the whole burst

    want = detections(per_report)
    assert [(d.id, d.data.pattern, d.data.incident_ids) for d in detections(lagging)] == [
        (d.id, d.data.pattern, d.data.incident_ids) for d in want
    ]
    # Completed by the 3rd school (multi) and the 4th report within 10 minutes (busy).
    assert {d.data.pattern: d.data.incident_ids for d in want} == {
        "multi": ["inc-0", "inc-1", "inc-2"],
        "busy": ["inc-0", "inc-1", "inc-2", "inc-3"],
    }
    multi = next(d for d in want if d.data.pattern == "multi")
    assert multi.occurred_at == start + 2 * timedelta(seconds=30)  # the completing report's
    requests = [m for m in lagging.messages if m.subject.endswith(".notification.requested")]
    assert len(requests) == 2 * len(multi.data.recipients) > 0


async def test_each_window_is_detected_once_and_a_later_window_again() -> None:
    log = FakeEventLog()
    start = datetime.now(UTC) - timedelta(minutes=55)
    # Three schools at minute 0-2, three more at minute 30-32 (within the first window),
    # three at minute 70-72: the first detection is 70 minutes old by then, a new window.
    for offset in (0, 30, 70):
        for i in range(3):
            stored_report(
                log, SCHOOLS[i], f"inc-{offset}-{i}", start + timedelta(minutes=offset + i)
            )
    d = detector(log)
    await d.run_once()
    assert [x.data.incident_ids for x in detections(log)] == [
        ["inc-0-0", "inc-0-1", "inc-0-2"],
        # The window ending at minute 70 (from minute 10) already has three schools.
        ["inc-30-0", "inc-30-1", "inc-30-2", "inc-70-0"],
    ]
    assert await d.run_once() == 0  # nothing new: nothing again


async def test_a_restarted_detector_catches_up_without_detecting_anything_twice() -> None:
    log = FakeEventLog()
    start = datetime.now(UTC) - timedelta(minutes=20)
    burst(log, 3, start=start, every=timedelta(minutes=1))
    await detector(log).run_once()
    assert len(detections(log)) == 1
    # A new process: reads the windows back, finds the detection stored, adds nothing.
    assert await detector(log).run_once() == 0
    assert len(detections(log)) == 1

    # A process that died after acking the reports but before detecting: the next one
    # detects at start-up (its first round, before any new report arrives).
    crashed = FakeEventLog()
    burst(crashed, 3, start=start, every=timedelta(minutes=1))
    await detector(crashed).run_once()
    assert [d.data.incident_ids for d in detections(crashed)] == [["inc-0", "inc-1", "inc-2"]]


class FailingAfter(FakeEventLog):
    """Fails every append after the first `ok` ones (a pattern's head stored, its alerts
    not), until `healed`."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok, self.healed = ok, False

    async def append(self, event: Any) -> Any:
        if not self.healed and self.ok <= 0:
            raise TimeoutError("nats: timeout")
        self.ok -= 1
        return await super().append(event)


async def test_a_detection_that_fails_is_retried_with_its_alerts_never_skipped() -> None:
    log = FailingAfter(ok=1)
    burst(log, 3, start=datetime.now(UTC) - timedelta(minutes=5), every=timedelta(minutes=1))
    d = detector(log)
    try:
        await d.run_once()
        raise AssertionError("the failure must propagate")
    except TimeoutError:
        pass
    assert len(detections(log)) == 1  # the head was stored, not its alerts
    log.healed = True
    await d.run_once()
    assert len(detections(log)) == 1
    [head] = detections(log)
    requests = [m for m in log.messages if m.subject.endswith(".notification.requested")]
    assert len(requests) == len(head.data.recipients) > 0


async def test_the_background_loop_logs_and_retries_a_failing_read() -> None:
    log = FakeEventLog()
    burst(log, 3, start=datetime.now(UTC) - timedelta(minutes=5), every=timedelta(minutes=1))
    log.fail_with = TimeoutError("nats: timeout")
    d = detector(log, retry_max=0.02)
    counted = PATTERN_DETECTION_FAILURES._value.get()
    d.start(catch_up_after=0)
    try:
        for _ in range(200):
            if d.failures >= 2:
                break
            await asyncio.sleep(0.01)
        assert d.failures >= 2 and detections(log) == []
        # Loud where operators look: the counter DooralertPatternDetectionFailing watches.
        assert PATTERN_DETECTION_FAILURES._value.get() - counted >= 2
        log.fail_with = None
        for _ in range(200):
            if detections(log):
                break
            await asyncio.sleep(0.01)
        assert len(detections(log)) == 1
    finally:
        await d.close()


class CountingLog(FakeEventLog):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def tail(self, subjects: Sequence[str], *, since: datetime) -> FakeTail:
        made = super().tail(subjects, since=since)
        first = made.read_new

        async def read_new() -> list[StoredMessage]:
            self.reads += "encounter.reported" in subjects[0]  # the reports' tail
            return await first()

        made.read_new = read_new  # type: ignore[method-assign]  # counting reads
        return made


async def test_a_burst_of_wakes_costs_a_few_reads_not_one_per_report() -> None:
    log = CountingLog()
    d = detector(log, min_interval=0.01)
    d.start(catch_up_after=0)
    try:
        start = datetime.now(UTC) - timedelta(minutes=5)
        seqs = burst(log, 200, start=start, every=timedelta(milliseconds=10))
        for seq in seqs:
            d.wake(seq)
            await asyncio.sleep(0)
        for _ in range(200):
            if d._read_upto == seqs[-1]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert d._read_upto == seqs[-1]
        assert log.reads <= 5
        assert {x.data.pattern for x in detections(log)} == {"multi", "busy"}
        reads = log.reads
        d.wake(seqs[10])  # a report already read: no read
        await asyncio.sleep(0.05)
        assert log.reads == reads
    finally:
        await d.close()


class StuckTail(FakeEventLog):
    """A log whose tail never answers (a start-up read of a long window)."""

    def tail(self, subjects: Sequence[str], *, since: datetime) -> FakeTail:
        made = super().tail(subjects, since=since)

        async def read_new() -> list[StoredMessage]:
            await asyncio.Event().wait()
            return []

        made.read_new = read_new  # type: ignore[method-assign]  # a read that never ends
        return made


def encounter(incident_id: str, school: str) -> EncounterReported:
    now = datetime.now(UTC)
    r = parse_report(report(school_id=school), now=now)
    return encounter_event(r, incident_id=incident_id, actor="key", now=now)


async def test_a_report_is_decided_and_acked_while_the_detector_reads() -> None:
    log = StuckTail()
    broker: Any = None  # on_report does not use the broker when given an event log
    router = Router(
        settings=Settings(), rules=RULES, directory=DIRECTORY, broker=broker, event_log=log
    )
    assert router.patterns is not None
    router.patterns.start(catch_up_after=0)
    try:
        await asyncio.sleep(0.01)  # the start-up read is in flight, and never ends
        for i, school in enumerate(SCHOOLS[:3]):
            msg = FakeMessage(b"", f"dooralert.{school}.inc-{i}.encounter.reported", seq=i + 1)
            done = await asyncio.wait_for(
                router.on_report(encounter(f"inc-{i}", school), msg),  # type: ignore[arg-type]
                timeout=2,
            )
            assert done is None
        types = [m.subject.rsplit(".", 1)[-1] for m in log.messages]
        assert types.count("decided") == 3 and types.count("requested") == 6  # law: 2 contacts
    finally:
        await router.patterns.close(grace=0.1)


class SlowAppends(FakeEventLog):
    def __init__(self) -> None:
        super().__init__()
        self.appending = asyncio.Event()

    async def append(self, event: Any) -> Any:
        self.appending.set()
        await asyncio.sleep(0.05)
        return await super().append(event)


async def test_stopping_lets_a_detection_in_progress_store_its_alerts() -> None:
    log = SlowAppends()
    burst(log, 3, start=datetime.now(UTC) - timedelta(minutes=5), every=timedelta(minutes=1))
    d = detector(log)
    d.start(catch_up_after=0)
    await asyncio.wait_for(log.appending.wait(), 2)
    await d.close()  # mid-way through storing the detection
    [head] = [x for x in detections(log) if x.data.pattern == "multi"]
    requests = [m for m in log.messages if m.subject.endswith(".notification.requested")]
    assert len(requests) == len(head.data.recipients) > 0


async def test_a_long_window_below_the_threshold_is_evaluated_in_linear_time() -> None:
    # 20,000 reports within the hour from two schools: "multi" (3 schools) never fires, and
    # each report's window holds thousands of reports; a rescan of each window would take
    # minutes.
    log = FakeEventLog()
    start = datetime.now(UTC) - timedelta(minutes=50)
    for i in range(20_000):
        stored_report(log, SCHOOLS[i % 2], f"inc-{i}", start + i * timedelta(milliseconds=100))
    multi = [p for p in RULES.patterns if p.name == "multi"]
    d = PatternDetector(multi, directory=DIRECTORY, event_log=lambda: log)
    began = time.monotonic()
    assert await d.run_once() == 0
    assert time.monotonic() - began < 5
    stored_report(log, SCHOOLS[2], "inc-third", start + timedelta(minutes=40))
    assert await d.run_once() == 1
    [found] = detections(log)
    assert len(found.data.incident_ids) == 20_001  # all within the hour before it


class ResettingTails(FakeEventLog):
    """A log whose first tails lose their place on their second read (their consumers were
    deleted); the tails made after read the log from its start again."""

    def __init__(self) -> None:
        super().__init__()
        self.made = 0

    def tail(self, subjects: Sequence[str], *, since: datetime) -> FakeTail:
        made = super().tail(subjects, since=since)
        self.made += 1
        if self.made > 2:
            return made
        first, calls = made.read_new, 0

        async def read_new() -> list[StoredMessage]:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise TailReset("consumer not found")
            return await first()

        made.read_new = read_new  # type: ignore[method-assign]  # fault injection
        return made


async def test_a_lost_tail_is_replaced_and_nothing_is_evaluated_twice_or_skipped() -> None:
    log = ResettingTails()
    start = datetime.now(UTC) - timedelta(minutes=5)
    stored_report(log, SCHOOLS[0], "inc-0", start)
    stored_report(log, SCHOOLS[1], "inc-1", start + timedelta(seconds=1))
    d = detector(log)
    assert await d.run_once() == 0
    stored_report(log, SCHOOLS[2], "inc-2", start + timedelta(seconds=2))
    assert await d.run_once() == 1  # the read lost its tails, the new ones read it all back
    assert log.made == 4
    stored_report(log, SCHOOLS[3], "inc-3", start + timedelta(seconds=3))
    assert await d.run_once() == 1  # "busy" (4 reports), not "multi" again
    assert [(x.data.pattern, x.data.incident_ids) for x in detections(log)] == [
        ("multi", ["inc-0", "inc-1", "inc-2"]),
        ("busy", ["inc-0", "inc-1", "inc-2", "inc-3"]),
    ]


async def test_a_detector_task_that_ends_unexpectedly_is_counted_and_started_again() -> None:
    log = FakeEventLog()
    burst(log, 3, start=datetime.now(UTC) - timedelta(minutes=5), every=timedelta(minutes=1))
    d = detector(log)
    counted = PATTERN_DETECTION_FAILURES._value.get()
    d.start(catch_up_after=60)
    first = d._task
    assert first is not None
    first.cancel()  # something unforeseen ends it (not close())
    for _ in range(100):
        if d._task is not None and d._task is not first:
            break
        await asyncio.sleep(0.01)
    try:
        assert d._task is not None and d._task is not first and not d._task.done()
        assert PATTERN_DETECTION_FAILURES._value.get() - counted == 1
        d.wake()  # and it still detects
        for _ in range(200):
            if detections(log):
                break
            await asyncio.sleep(0.01)
        assert len(detections(log)) == 1
    finally:
        await d.close()
    assert d._task is None
