"""The router service (I/O only): encounter reports in, escalation decisions out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

from schemas.events import EncounterReported
from services.common.consumer import raw_decoder, run_handler
from services.common.directory import Directory
from services.common.logging import get_logger
from services.common.settings import Settings
from services.common.streams import STREAM, SUBJECT_PREFIX, publish_events
from services.router.decide import decide
from services.router.rules import Rules

log = get_logger("dooralert.router")
SUBJECT = f"{SUBJECT_PREFIX}.*.*.encounter.reported"


def build_broker(settings: Settings, *, rules: Rules, directory: Directory) -> NatsBroker:
    broker = NatsBroker(
        settings.nats_url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        log_level=logging.DEBUG,
    )

    async def handle(event: EncounterReported, _: NatsMessage) -> float | None:
        events = decide(event, rules=rules, directory=directory, now=datetime.now(UTC))
        await publish_events(
            broker.connection.jetstream(),
            events,
            timeout=settings.publish_timeout_seconds,
            retry_for=settings.publish_retry_seconds,
        )
        log.info(
            "escalation.decided",
            incident=event.incident_id,
            school=event.school_id,
            notifications=len(events) - 1,
        )
        return None

    @broker.subscriber(
        SUBJECT,
        stream=JStream(STREAM, declare=False),
        durable="router",
        pull_sub=PullSub(batch_size=64, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_decoder,
        title="router",
        description="Applies rules.yaml to each encounter report",
    )
    async def on_encounter(body: bytes, msg: NatsMessage) -> None:
        await run_handler(
            msg,
            js=broker.connection.jetstream(),
            consumer="router",
            expect=EncounterReported,
            handle=handle,
        )

    return broker


def build_app(settings: Settings, *, rules: Rules, directory: Directory) -> FastStream:
    return FastStream(build_broker(settings, rules=rules, directory=directory))
