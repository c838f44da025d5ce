"""The router service (I/O only): reports, deadlines and follow-ups in, decisions out.

Three durable consumers: `router` (encounter reports), `router-followups` (updates,
resolutions, unreachable contacts) and `router-timers` (fired deadlines from
DOORALERT_TIMERS). All decisions are pure functions of the incident's folded events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from faststream.nats.message import NatsMessage as RawNatsMessage
from nats.aio.msg import Msg

from schemas.events import (
    EncounterReported,
    EncounterUpdated,
    EscalationDecided,
    EscalationRaised,
    Event,
    IncidentReopened,
    IncidentResolved,
    NotificationFailed,
)
from services.domain.directory import Directory
from services.domain.incident import fold
from services.eventlog import (
    STREAM,
    SUBJECT_PREFIX,
    TIMER_FIRED_PREFIX,
    TIMERS_STREAM,
    ConnectionGuard,
    EventLog,
    JetStreamEventLog,
    broker_options,
    new_guard,
)
from services.eventlog.connection import subscriber_inbox
from services.eventlog.consumer import message_parser, run_handler
from services.eventlog.pull import HeldPull, hold_pulls
from services.eventlog.watch import run_watched
from services.router import deadlines
from services.router.deadlines import Deadline, DeadlineUnreadable
from services.router.decide import decide
from services.router.escalate import (
    on_deadline,
    on_followup,
    on_unreachable,
    reopened_deadline,
)
from services.router.patterns import PatternDetector
from services.router.rules import Rules
from services.runtime.logging import get_logger
from services.runtime.metrics import ESCALATIONS
from services.runtime.settings import Settings

log = get_logger("dooralert.router")

SUBJECT = f"{SUBJECT_PREFIX}.*.*.encounter.reported"


async def body_and_message(msg: RawNatsMessage) -> tuple[bytes, RawNatsMessage]:
    """The decoder of a broker without dependency injection: each handler gets the stored
    bytes and the message (to ack, nack or reject) as its two arguments."""
    return bytes(msg.body), msg


def _stream_seq(msg: NatsMessage) -> int | None:
    """The stream sequence a delivered message was stored at (None if it has no metadata)."""
    try:
        return int(msg.raw_message.metadata.sequence.stream)
    except Exception:  # noqa: BLE001 - a message without JetStream metadata: read anyway
        return None


class Router:
    """The router's I/O: reads the incident, calls the pure decisions, appends what they return."""

    def __init__(
        self,
        *,
        settings: Settings,
        rules: Rules,
        directory: Directory,
        broker: NatsBroker,
        event_log: EventLog | None = None,
    ) -> None:
        self.settings, self.rules, self.directory, self.broker = settings, rules, directory, broker
        self._log = event_log
        # Cross-school patterns are detected in the background (patterns.py): a report only
        # wakes the detector, so its reads of the log never delay an alert.
        self.patterns: PatternDetector | None = None
        if rules.patterns:
            self.patterns = PatternDetector(
                rules.patterns, directory=directory, event_log=lambda: self.event_log
            )

    @property
    def event_log(self) -> EventLog:
        """The event log given at construction, else JetStream on the broker's connection
        (which exists only once the broker has connected)."""
        if self._log is None:
            self._log = JetStreamEventLog(
                self.broker.connection.jetstream(),
                publish_timeout=self.settings.publish_timeout_seconds,
                retry_for=self.settings.publish_retry_seconds,
            )
        return self._log

    async def publish(self, events: list[Event]) -> None:
        """Append a head event and the requests that follow from it."""
        await self.event_log.append_all(events)

    async def arm(
        self, *, school_id: str, incident_id: str, tier: int, at: datetime, round: int = 0
    ) -> None:
        """Schedule the escalation deadline of `tier` for an incident (in its `round`th
        reopening)."""
        deadline = Deadline(
            school_id=school_id, incident_id=incident_id, tier=tier, at=at, round=round
        )
        await deadlines.schedule(self.event_log, deadline, now=datetime.now(UTC))

    async def on_report(self, event: EncounterReported, msg: NatsMessage) -> float | None:
        """Decide who is told about a new report; arm the first deadline; wake the pattern
        detector.

        The decision and its requests go out together, in one flush: the requests are stored
        one round trip after the report arrives rather than two (the decision's PubAck is no
        longer awaited first). Publishes on one connection are stored in the order sent, and
        the decision is sent first, so the log still reads decision, then requests.

        Only when the decision's publish fails can requests be stored without it, and nothing
        needs it before them: the fold sets the decision's fields (severity, routes, required
        roles, deadline) and adds the requests' notifications independently, in either order;
        the notifier plans an alert from the request and the report alone; the ledger, replay,
        incident page and after-action report show the log in its order. The decision is then
        retried under its id (publish_event), and after that the report (nacked, delivered
        again: `decide` derives the same ids, so the server drops the requests stored already
        as duplicates within its one-hour window) until it is stored. Meanwhile the alerts
        go out; an unreachable contact's escalation or a follow-up made in that window finds
        no decision and takes the fallback severity "high" and no route names (escalate.py).

        The tier-1 deadline (on DOORALERT_TIMERS, another stream) does need the decision, so
        it is armed only once the decision's PubAck is back: a deadline that fired before its
        decision was stored would find no role to wait for and end its chain, and the same
        timer armed again afterwards would be dropped as a duplicate.
        """
        now = datetime.now(UTC)
        decided, *requests = decide(event, rules=self.rules, directory=self.directory, now=now)
        assert isinstance(decided, EscalationDecided)
        # The decision first, so its publish is buffered first.
        acks = await self._send([decided, *requests])
        failures: list[Exception] = []
        try:
            await acks[0]
            if decided.data.require_ack and decided.data.ack_deadline is not None:
                await self.arm(
                    school_id=event.school_id,
                    incident_id=event.incident_id,
                    tier=1,
                    at=decided.data.ack_deadline,
                )
        except Exception as exc:  # noqa: BLE001 - raised once the requests have settled
            failures.append(exc)
        for ack in acks[1:]:
            try:
                await ack
            except Exception as exc:  # noqa: BLE001 - raised below
                failures.append(exc)
        if failures:
            raise failures[0]
        log.info(
            "escalation.decided",
            incident=event.incident_id,
            school=event.school_id,
            notifications=len(requests),
            deadline=str(decided.data.ack_deadline),
        )
        if self.patterns is not None:
            self.patterns.wake(_stream_seq(msg))
        return None

    async def _send(self, events: list[Event]) -> list[asyncio.Future[Any]]:
        """Start appending `events`, in order: the future of each one's append. JetStream's
        log sends them all before any is awaited, one timer for their PubAcks and a retry
        only for a publish not acknowledged (`JetStreamEventLog.send`); another log appends
        each in a task of its own, started in order."""
        log_ = self.event_log
        if isinstance(log_, JetStreamEventLog):
            return list(await log_.send(events))
        return [asyncio.ensure_future(log_.append(e)) for e in events]

    async def on_followup(self, event: Event, _: NatsMessage) -> float | None:
        """Pass an update or all-clear on to everyone alerted; escalate an unreachable contact."""
        now = datetime.now(UTC)
        incident = event.incident_id
        state = fold(await self.event_log.read_incident(incident), incident_id=incident)
        if isinstance(event, (EncounterUpdated, IncidentResolved, IncidentReopened)):
            events = on_followup(state, event, now=now)
        elif isinstance(event, NotificationFailed):
            events = on_unreachable(state, event, directory=self.directory, now=now)
        else:
            return None
        if events:
            await self.publish(events)
            log.info(
                "followup.notified",
                incident=event.incident_id,
                type=event.type,
                notifications=sum(e.type == "notification.requested" for e in events),
            )
        if isinstance(event, IncidentReopened) and state is not None:
            # Escalation resumes where it stopped for the roles still to confirm.
            due = reopened_deadline(state, rules=self.rules, now=now)
            if due is not None:
                tier, at = due
                await self.arm(
                    school_id=event.school_id,
                    incident_id=incident,
                    tier=tier,
                    at=at,
                    round=state.reopen_count,
                )
        return None

    async def on_timer(self, msg: NatsMessage) -> None:
        """A deadline fired: escalate if acknowledgements are missing, then arm the next tier."""
        try:
            school_id, incident_id, tier = deadlines.decode(msg.raw_message.data)
        except DeadlineUnreadable:
            log.error("timer.unreadable", subject=msg.raw_message.subject)
            await msg.reject()
            return
        try:
            now = datetime.now(UTC)
            state = fold(await self.event_log.read_incident(incident_id), incident_id=incident_id)
            events, next_deadline = on_deadline(
                state, tier=tier, rules=self.rules, directory=self.directory, now=now
            )
            await self.publish(events)
            if next_deadline is not None:
                await self.arm(
                    school_id=school_id,
                    incident_id=incident_id,
                    tier=tier + 1,
                    at=next_deadline,
                    round=state.reopen_count if state else 0,
                )
        except Exception:
            log.exception("timer.failed", incident=incident_id, tier=tier)
            await msg.nack(delay=2.0)
            return
        if events and isinstance(raised := events[0], EscalationRaised):
            ESCALATIONS.labels(school_id, str(tier)).inc()
            log.warning(
                "escalation.raised",
                incident=incident_id,
                tier=tier,
                missing=raised.data.missing_roles,
            )
        await msg.ack()


class RouterBroker(NatsBroker):
    """The router's broker: it also runs the pattern detector, from when the subscribers are
    bound until they stop (what a stop leaves undetected, the next start catches up on)."""

    detector: PatternDetector | None = None
    grace = 0.0  # seconds the messages in hand may take to finish on stop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[HeldPull] = []  # the consumers' held pulls (build_broker)

    async def start(self) -> None:
        """Connect and bind the subscribers, then start detecting patterns."""
        await super().start()
        if self.detector is not None:
            self.detector.start()

    async def stop(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> None:
        """Stop detecting, finish the messages in hand, then stop the subscribers and drain
        the connection."""
        if self.detector is not None:
            await self.detector.close()
        if self.held:
            await asyncio.gather(*(h.close(self.grace) for h in self.held))
        await super().stop(exc_type, exc_val, exc_tb)


def _arrival(
    handler: Callable[[bytes, Any], Awaitable[None]],
) -> Callable[[Msg], Awaitable[None]]:
    """A handler of (body, message) as a held pull's handler of the raw message."""

    async def arrived(raw: Msg) -> None:
        await handler(bytes(raw.data), await message_parser(raw))

    return arrived


def build_broker(
    settings: Settings,
    *,
    rules: Rules,
    directory: Directory,
    event_log: EventLog | None = None,
    guard: ConnectionGuard | None = None,
) -> NatsBroker:
    """The router's broker and subscribers; `event_log` replaces JetStream in service tests;
    `guard` watches the connection (see `run`)."""
    broker = RouterBroker(
        **broker_options(
            settings.nats_url,
            name="dooralert-router",
            guard=guard,
        ),
        log_level=logging.DEBUG,
        # No dependency injection: a handler is called with the decoded (body, message).
        # FastStream resolved a `msg: NatsMessage` parameter in a worker thread, a thread hop
        # (and a pydantic validation of the arguments) per message.
        apply_types=False,
        # SIGTERM: messages in hand finish (and are acked) before the connection drains.
        graceful_timeout=settings.shutdown_grace_seconds,
    )
    router = Router(
        settings=settings, rules=rules, directory=directory, broker=broker, event_log=event_log
    )
    broker.detector = router.patterns
    events = JStream(STREAM, declare=False)
    pull = PullSub(batch_size=64, timeout=1.0)
    inbox = subscriber_inbox(settings.nats_url)  # the router user's own inboxes

    reports = broker.subscriber(
        SUBJECT,
        durable="router",
        title="router",
        description="Applies rules.yaml to each encounter report",
        stream=events,
        pull_sub=pull,
        inbox_prefix=inbox,
        ack_policy=AckPolicy.MANUAL,
        decoder=body_and_message,
    )

    async def on_encounter(body: bytes, msg: Any) -> None:
        await run_handler(
            msg,
            event_log=router.event_log,
            consumer="router",
            expect=EncounterReported,
            handle=router.on_report,
        )

    followups = broker.subscriber(
        f"{SUBJECT_PREFIX}.>",
        durable="router-followups",
        title="router-followups",
        description="encounter.updated, incident.resolved, incident.reopened, notification.failed",
        stream=events,
        pull_sub=pull,
        inbox_prefix=inbox,
        ack_policy=AckPolicy.MANUAL,
        decoder=body_and_message,
    )

    async def on_followup(body: bytes, msg: Any) -> None:
        await run_handler(
            msg,
            event_log=router.event_log,
            consumer="router-followups",
            expect=Event,
            handle=router.on_followup,
        )

    timers = broker.subscriber(
        f"{TIMER_FIRED_PREFIX}.>",
        durable="router-timers",
        title="router-timers",
        description="Escalation deadlines fired by DOORALERT_TIMERS message schedules",
        stream=JStream(TIMERS_STREAM, declare=False),
        pull_sub=pull,
        inbox_prefix=inbox,
        ack_policy=AckPolicy.MANUAL,
        decoder=body_and_message,
    )

    async def on_timer(body: bytes, msg: Any) -> None:
        await router.on_timer(msg)

    # Each handler bound through FastStream (TestNatsBroker delivers there), and consumed in
    # production through held pull requests instead of FastStream's fetch loop
    # (services/eventlog/pull.py): up to `pull.batch_size` messages in hand per consumer, as
    # the batches were.
    for subscriber, handler, name in (
        (reports, on_encounter, "router"),
        (followups, on_followup, "router-followups"),
        (timers, on_timer, "router-timers"),
    ):
        subscriber(handler)
        held = HeldPull(_arrival(handler), capacity=pull.batch_size, name=name)
        if hold_pulls(subscriber, held):
            broker.held.append(held)
    broker.grace = settings.shutdown_grace_seconds
    return broker


def build_app(settings: Settings, *, rules: Rules, directory: Directory) -> FastStream:
    """The router as a FastStream application."""
    return FastStream(build_broker(settings, rules=rules, directory=directory))


CONSUMERS = ("router", "router-followups", "router-timers")


def run(settings: Settings, *, rules: Rules, directory: Directory) -> int:
    """Run the router until stopped, watching its consumers; the process's exit code
    (EXIT_DRIFT when a consumer was paused, deleted or redefined; EXIT_NATS_LOST when the
    NATS connection was closed for good)."""
    guard = new_guard(
        settings.nats_url, "dooralert-router", attempts=settings.nats_reconnect_attempts
    )
    guard.exit_if_stuck(after=settings.shutdown_grace_seconds + 10)
    broker = build_broker(settings, rules=rules, directory=directory, guard=guard)
    watched = run_watched(
        FastStream(broker),
        broker,
        CONSUMERS,
        every=settings.consumer_check_seconds,
        health=("router", settings.metrics_host, settings.metrics_port),
        guard=guard,
    )
    return asyncio.run(watched)
