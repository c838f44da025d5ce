"""The pipeline's health: for each durable consumer of the router and the notifier, how much
waits (lag), how long the oldest message has waited, whether anyone is pulling, and whether
the consumer keeps the contract. Intake's /healthz and `dooralert status` answer from it.

`judge` is pure (it takes `now`); `PipelineMonitor` reads the server and keeps the latest
report, refreshed in the background so that no request ever waits for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from services.eventlog.contract import STREAM, check_consumer, contract_consumer, filters
from services.runtime import metrics
from services.runtime.logging import get_logger

log = get_logger("dooralert.pipeline")
PIPELINE = ("router", "router-followups", "router-timers", "notifier")
SERVICE = {"router": "router", "router-followups": "router", "router-timers": "router"}


@dataclass(frozen=True)
class Sample:
    """What the server said about one consumer: its info (None: it does not exist), the stored
    times of its oldest undelivered and oldest unacknowledged messages, or why it could not
    be read."""

    name: str
    info: ConsumerInfo | None = None
    oldest_undelivered: datetime | None = None
    oldest_unacked: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """When waiting becomes a stall (seconds; from Settings.pipeline_*)."""

    stall: float = 10.0
    unacked: float = 120.0


@dataclass(frozen=True)
class ConsumerHealth:
    """One consumer's signals and what is wrong with it."""

    name: str
    stream: str
    present: bool
    paused_until: str | None
    num_pending: int
    num_ack_pending: int
    oldest_undelivered_seconds: float | None
    oldest_unacked_seconds: float | None
    consuming: bool | None  # None: not watched long enough to say
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineHealth:
    """The whole pipeline at `checked_at`: healthy only when no consumer has a problem."""

    checked_at: datetime
    consumers: list[ConsumerHealth]

    @property
    def problems(self) -> list[str]:
        """Every consumer's problems, in pipeline order."""
        return [p for c in self.consumers for p in c.problems]

    @property
    def healthy(self) -> bool:
        """Whether alerts are flowing (no consumer stalled, missing, paused or redefined)."""
        return not self.problems

    def as_json(self) -> dict[str, object]:
        """The report as /healthz and `dooralert status --json` show it."""
        return {
            "status": "ok" if self.healthy else "stalled",
            "checked_at": self.checked_at.isoformat(timespec="seconds"),
            "problems": self.problems,
            "consumers": {
                c.name: {k: v for k, v in asdict(c).items() if k not in ("name", "problems")}
                for c in self.consumers
            },
        }


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 1)


def _consuming(
    sample: Sample, *, now: datetime, pulled_at: datetime | None, since: datetime, stall: float
) -> bool | None:
    info = sample.info
    assert info is not None
    seen = [pulled_at] if pulled_at else []
    seen += [s.last_active for s in (info.delivered, info.ack_floor) if s and s.last_active]
    if (info.num_waiting or 0) > 0 or any(now - t <= timedelta(seconds=stall) for t in seen):
        return True
    if now - since < timedelta(seconds=stall):
        return None  # not watched for long enough to tell an idle consumer from a dead one
    return False


def judge(
    sample: Sample,
    *,
    now: datetime,
    pulled_at: datetime | None,
    since: datetime,
    limits: Thresholds,
) -> ConsumerHealth:
    """One consumer's health (pure): `pulled_at` is when someone was last seen pulling from
    it, `since` when watching began."""
    stream, want = contract_consumer(sample.name)
    service = SERVICE.get(sample.name, sample.name)
    if sample.error is not None:
        problem = f"cannot read consumer {sample.name}: {sample.error}"
        return ConsumerHealth(sample.name, stream, False, None, 0, 0, None, None, None, [problem])
    check = check_consumer(sample.info, stream, want)
    info = sample.info
    if info is None:
        return ConsumerHealth(
            sample.name, stream, False, None, 0, 0, None, None, None, check.problems
        )
    problems = list(check.problems)
    undelivered = _age(now, sample.oldest_undelivered)
    unacked = _age(now, sample.oldest_unacked)
    if undelivered is not None and undelivered > limits.stall:
        problems.append(
            f"consumer {sample.name}: the oldest message has waited {undelivered:.0f} s "
            f"undelivered (limit {limits.stall:.0f} s): is the {service} running?"
        )
    if unacked is not None and unacked > limits.unacked:
        problems.append(
            f"consumer {sample.name}: a message has been unacknowledged for {unacked:.0f} s "
            f"(limit {limits.unacked:.0f} s): the {service} is stuck or retrying"
        )
    consuming = _consuming(sample, now=now, pulled_at=pulled_at, since=since, stall=limits.stall)
    if consuming is False and not check.paused_until:
        problems.append(
            f"consumer {sample.name}: nobody has pulled from it for over {limits.stall:.0f} s: "
            f"is the {service} running?"
        )
    return ConsumerHealth(
        name=sample.name,
        stream=stream,
        present=True,
        paused_until=check.paused_until,
        num_pending=info.num_pending or 0,
        num_ack_pending=info.num_ack_pending or 0,
        oldest_undelivered_seconds=undelivered,
        oldest_unacked_seconds=unacked,
        consuming=consuming,
        problems=problems,
    )


async def _first_after(js: JetStreamContext, seq: int, subjects: list[str]) -> datetime | None:
    """The stored time of the first message at or after `seq` on any of `subjects`."""
    times = []
    for subject in subjects:
        try:
            msg = await js.get_msg(STREAM, seq=max(seq, 1), subject=subject, next=True)
        except NotFoundError:
            continue
        if msg.time is not None:
            times.append(msg.time)
    return min(times, default=None)


async def sample(js: JetStreamContext, name: str, *, timeout: float = 2.0) -> Sample:
    """Read one consumer's info and, when messages wait, their stored times."""
    stream, want = contract_consumer(name)
    try:
        try:
            info: ConsumerInfo = await js.consumer_info(stream, name, timeout=timeout)
        except NotFoundError:
            return Sample(name)
        if stream != STREAM:
            # Timers are not the event log: no per-message times (intake may not read them).
            return Sample(name, info)
        subjects = filters(want)
        undelivered = unacked = None
        if info.num_pending and info.delivered is not None:
            undelivered = await _first_after(js, info.delivered.stream_seq + 1, subjects)
        if (info.num_ack_pending or info.num_pending) and info.ack_floor is not None:
            unacked = await _first_after(js, info.ack_floor.stream_seq + 1, subjects)
        return Sample(name, info, undelivered, unacked)
    except (NatsError, TimeoutError, OSError) as exc:
        return Sample(name, error=str(exc) or type(exc).__name__)


def export(report: PipelineHealth) -> None:
    """Set the consumer gauges (lag, oldest waiting, health) from a report."""
    for c in report.consumers:
        metrics.CONSUMER_PENDING.labels(c.name).set(c.num_pending)
        metrics.CONSUMER_ACK_PENDING.labels(c.name).set(c.num_ack_pending)
        metrics.CONSUMER_OLDEST_PENDING.labels(c.name).set(c.oldest_undelivered_seconds or 0.0)
        metrics.CONSUMER_OLDEST_UNACKED.labels(c.name).set(c.oldest_unacked_seconds or 0.0)
        metrics.CONSUMER_HEALTHY.labels(c.name).set(0.0 if c.problems else 1.0)
    metrics.PIPELINE_CHECKED.set(report.checked_at.timestamp())


class PipelineMonitor:
    """Keeps the latest PipelineHealth; `refresh` reads the server, `start` refreshes every
    few seconds in the background."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        limits: Thresholds,
        since: datetime,
        names: tuple[str, ...] = PIPELINE,
    ) -> None:
        self.js, self.limits, self.since, self.names = js, limits, since, names
        self.latest: PipelineHealth | None = None
        self._pulled: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, now: datetime) -> PipelineHealth:
        """Read every consumer once and judge the pipeline at `now`."""
        samples = await asyncio.gather(*(sample(self.js, n) for n in self.names))
        for s in samples:
            if s.info is not None and (s.info.num_waiting or 0) > 0:
                self._pulled[s.name] = now
        report = PipelineHealth(
            checked_at=now,
            consumers=[
                judge(
                    s,
                    now=now,
                    pulled_at=self._pulled.get(s.name),
                    since=self.since,
                    limits=self.limits,
                )
                for s in samples
            ],
        )
        if self.latest is not None and self.latest.healthy and not report.healthy:
            log.error("pipeline.stalled", problems=report.problems)
        elif self.latest is not None and not self.latest.healthy and report.healthy:
            log.info("pipeline.recovered")
        self.latest = report
        export(report)
        return report

    def current(self, now: datetime, *, max_age: float) -> PipelineHealth | None:
        """The latest report, unless it is older than `max_age` seconds (None: unknown)."""
        if self.latest is None or (now - self.latest.checked_at).total_seconds() > max_age:
            return None
        return self.latest

    def start(self, every: float) -> None:
        """Refresh every `every` seconds until `close`."""

        async def loop() -> None:
            while True:
                try:
                    await self.refresh(datetime.now(self.since.tzinfo))
                except Exception:  # a failed check leaves the report to age out
                    log.exception("pipeline.check_failed")
                await asyncio.sleep(every)

        self._task = asyncio.create_task(loop())

    async def close(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
