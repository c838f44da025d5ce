"""The notifier service (I/O only): the broker, its subscribers and the process around them.

The handler (handler.py) delivers one request; this module binds it to the `notifier` durable
consumer and the max-deliveries advisories, and runs the process (health port, consumer watch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Any

from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.msg import Msg

from schemas.events import (
    NotificationRequested,
)
from services.domain.directory import Directory
from services.eventlog import STREAM, SUBJECT_PREFIX, ConnectionGuard, broker_options, new_guard
from services.eventlog.connection import subscriber_inbox
from services.eventlog.consumer import message_decoder, message_parser, raw_decoder, run_handler
from services.eventlog.interface import EventLog
from services.eventlog.notekeys import NoteKeys
from services.eventlog.pull import HeldPull, hold_pulls
from services.eventlog.watch import run_watched
from services.notifier.deadletters import ADVISORY_SUBJECT, record_advisory
from services.notifier.handler import Notifier
from services.notifier.message import TemplateCheckError, default_templates
from services.notifier.records import DeliveryRecords
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.notifier")
SUBJECT = f"{SUBJECT_PREFIX}.*.*.notification.requested"

__all__ = ["SUBJECT", "Notifier", "build_app", "build_broker", "build_notifier", "run"]


def build_broker(
    settings: Settings,
    *,
    directory: Directory,
    event_log: EventLog | None = None,
    records: DeliveryRecords | None = None,
) -> NatsBroker:
    """The notifier's broker and subscribers; see `build_notifier`."""
    return build_notifier(settings, directory=directory, event_log=event_log, records=records)[0]


def build_notifier(
    settings: Settings,
    *,
    directory: Directory,
    event_log: EventLog | None = None,
    records: DeliveryRecords | None = None,
    guard: ConnectionGuard | None = None,
    note_keys: NoteKeys | None = None,
) -> tuple[NatsBroker, Notifier]:
    """The broker with the notifier's subscribers, and the notifier (to close its clients).
    `event_log`, `records` and `note_keys` replace JetStream in service tests; `guard` watches
    the connection (see `run`).

    Raises TemplateCheckError when a template is missing or broken: no alert goes out
    half-rendered, so the notifier does not start.
    """
    default_templates().check()
    broker = NotifierBroker(
        **broker_options(
            settings.nats_url,
            name="dooralert-notifier",
            guard=guard,
        ),
        log_level=logging.DEBUG,
        # No dependency injection: each handler takes the one decoded value. FastStream's
        # injection of a `msg: NatsMessage` parameter resolved it in a worker thread, a thread
        # hop per message (about a tenth of the notifier's CPU in a burst).
        apply_types=False,
        # SIGTERM: an alert being sent is sent, recorded and acked before the connection drains.
        graceful_timeout=settings.shutdown_grace_seconds,
    )
    notifier = Notifier(
        settings=settings,
        directory=directory,
        broker=broker,
        event_log=event_log,
        records=records,
        note_keys=note_keys,
    )

    requests = broker.subscriber(
        SUBJECT,
        stream=JStream(STREAM, declare=False),
        durable="notifier",
        # Concurrent workers: a slow or hanging target holds one worker, never the others.
        pull_sub=PullSub(batch_size=max(1, settings.notifier_workers), timeout=1.0),
        inbox_prefix=subscriber_inbox(settings.nats_url),  # the notifier user's own inboxes
        max_workers=max(2, settings.notifier_workers),
        ack_policy=AckPolicy.MANUAL,
        parser=message_parser,
        decoder=message_decoder,
        title="notifier",
        description="Delivers each notification request and records the outcome",
    )
    _prefetch_records(requests, notifier)

    async def handle(event: NotificationRequested, msg: NatsMessage) -> float | None:
        delay = await notifier.handle(event, msg)
        if delay is None:
            # Done: acked with the next write (handler.LazyAcks); run_handler's ack then only
            # marks the message done.
            await notifier.acks.ack(msg.raw_message)
        return delay

    async def on_request(msg: Any) -> None:
        await run_handler(
            msg,
            event_log=notifier.event_log,
            consumer="notifier",
            expect=NotificationRequested,
            handle=handle,
        )

    requests(on_request)

    async def on_arrival(raw: Msg) -> None:
        await on_request(await message_parser(raw))

    # Held pull requests instead of FastStream's fetch loop (services/eventlog/pull.py).
    held = HeldPull(
        on_arrival,
        capacity=max(2, settings.notifier_workers),
        name="notifier",
        arrived=notifier.prefetch,
    )
    if hold_pulls(requests, held):
        broker.held, broker.grace = held, settings.shutdown_grace_seconds

    @broker.subscriber(
        ADVISORY_SUBJECT,
        decoder=raw_decoder,
        title="dead-letters",
        description="Max-deliveries advisories recorded as message.dead_lettered events",
    )
    async def on_max_deliveries(body: Any) -> None:
        try:
            await record_advisory(
                body, event_log=notifier.event_log, js=broker.connection.jetstream()
            )
        except Exception:
            log.exception("advisory.record_failed")

    return broker, notifier


class NotifierBroker(NatsBroker):
    """The notifier's broker: on stop, the requests in hand are finished (sent, recorded and
    acked) before the subscribers stop and the connection drains."""

    held: HeldPull | None = None
    grace = 0.0  # seconds the requests in hand may take (shutdown_grace_seconds)

    async def stop(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> None:
        if self.held is not None:
            await self.held.close(self.grace)
        await super().stop(exc_type, exc_val, exc_tb)


def _prefetch_records(subscriber: Any, notifier: Notifier) -> None:
    """Start the delivery record reads of each fetched batch together (handler.py says why).

    FastStream's concurrent pull subscriber hands each fetched message to its workers through
    `_put_msg`, all of a batch in one turn of the event loop: the reads started there go to
    NATS in one write. Only while a worker is free (its `limiter`): in a burst a message waits
    for one, and its read would be too old to use. Without these (another FastStream) each
    handler reads its own.
    """
    put = getattr(subscriber, "_put_msg", None)
    limiter = getattr(subscriber, "limiter", None)
    if put is None or limiter is None:
        return

    async def put_prefetching(raw: Msg) -> None:
        if limiter.value > 0:
            try:
                notifier.prefetch(raw)
            except Exception:
                # Never end FastStream's fetch loop: the handler reads the record itself and
                # refuses what it cannot parse.
                log.warning("notifier.prefetch_failed", exc_info=True)
        await put(raw)

    subscriber._put_msg = put_prefetching


def build_app(settings: Settings, *, directory: Directory) -> FastStream:
    """The notifier as a FastStream app; exits with the reason when a template is broken."""
    try:
        broker, notifier = build_notifier(settings, directory=directory)
    except TemplateCheckError as exc:
        raise SystemExit(f"dooralert notifier: refusing to start: {exc}") from None
    app = FastStream(broker)
    app.after_shutdown(notifier.close)
    return app


CONSUMERS = ("notifier",)
SMTP_PROBE_SECONDS = 15.0  # how often readiness asks the SMTP server (NOOP on a pooled session)


def run(settings: Settings, *, directory: Directory) -> int:
    """Run the notifier until stopped, watching its consumer; the process's exit code
    (EXIT_DRIFT when the consumer was paused, deleted or redefined; EXIT_NATS_LOST when the
    NATS connection was closed for good)."""
    try:
        guard = new_guard(
            settings.nats_url, "dooralert-notifier", attempts=settings.nats_reconnect_attempts
        )
        broker, notifier = build_notifier(settings, directory=directory, guard=guard)
    except TemplateCheckError as exc:
        raise SystemExit(f"dooralert notifier: refusing to start: {exc}") from None
    app = FastStream(broker)
    app.after_shutdown(notifier.close)
    guard.exit_if_stuck(after=settings.shutdown_grace_seconds + 10)
    probing: list[asyncio.Task[None]] = []

    async def start_smtp_tasks() -> None:
        probing.append(asyncio.create_task(notifier.smtp.watch(SMTP_PROBE_SECONDS)))
        probing.append(asyncio.create_task(learn_addresses()))

    async def learn_addresses() -> None:
        started = time.perf_counter()
        learnt = await notifier.learn_addresses()
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info("smtp.addresses_learnt", addresses=learnt, elapsed_ms=elapsed_ms)

    async def stop_probing() -> None:
        for task in probing:
            task.cancel()

    app.after_startup(start_smtp_tasks)
    app.on_shutdown(stop_probing)
    watched = run_watched(
        app,
        broker,
        CONSUMERS,
        every=settings.consumer_check_seconds,
        health=("notifier", settings.metrics_host, settings.metrics_port),
        checks=lambda: {"smtp": notifier.smtp.ok},
        guard=guard,
    )
    return asyncio.run(watched)
