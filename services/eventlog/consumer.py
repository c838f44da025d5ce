"""Running a handler on a durable consumer with explicit, deliberate acknowledgement.

FastStream's default for NATS terminates a message whose handler raises (DESIGN §8); here
every outcome is chosen: an unreadable message, or one whose payload is not what its subject
says (DESIGN §4: a forged event), is set aside as a `message.dead_lettered` event and
terminated, a failure is retried after a delay, success is acked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from faststream.nats import NatsMessage
from nats.aio.msg import Msg

from schemas.envelope import originating
from schemas.events import (
    Event,
    EventDecodeError,
    MessageDeadLettered,
    MessageDeadLetteredData,
    derive_id,
    parse_stored,
)
from schemas.report import TOKEN_PATTERN
from services.eventlog.interface import EventLog
from services.runtime.logging import get_logger

log = get_logger("dooralert.consumer")
_TOKEN = re.compile(TOKEN_PATTERN)

# A handler returns None when the message is done (ack), or a delay in seconds after which
# it must be delivered again.
Handler = Callable[[Any, NatsMessage], Awaitable[float | None]]


async def raw_decoder(msg: Any) -> bytes:
    """Hand handlers the exact stored bytes; decoding is ours, so a bad payload is ours too."""
    return bytes(msg.body)


async def message_parser(msg: Msg) -> NatsMessage:
    """FastStream's JetStream parser less what these handlers do not use, per message: the
    match of the subject against the subscription's pattern (no path parameters here) and a
    random correlation id (uuid4; the delivery's ack subject, unique, names the message)."""
    headers = msg.header or {}
    return NatsMessage(
        raw_message=msg,
        body=msg.data,
        reply_to=headers.get("reply_to", ""),
        headers=headers,
        content_type=headers.get("content-type"),
        message_id=headers.get("message_id") or msg.reply or None,
        correlation_id=headers.get("correlation_id") or msg.reply or None,
    )


async def message_decoder(msg: Any) -> Any:
    """Hand a handler the message itself (body, subject, metadata, ack): for a broker built
    with `apply_types=False`, whose handlers take exactly one argument, the decoded value."""
    return msg


def dead_letter_event(
    *, consumer: str, seq: int, subject: str, reason: str, now: datetime
) -> MessageDeadLettered:
    """The `message.dead_lettered` event for stream message `seq` given up by `consumer`
    (pure). Its id derives from both, so every process reporting it appends one event."""
    parts = subject.split(".")
    school = parts[1] if len(parts) > 3 and _TOKEN.match(parts[1]) else "unknown"
    incident = parts[2] if len(parts) > 3 and _TOKEN.match(parts[2]) else "unknown"
    return originating(
        MessageDeadLettered,
        MessageDeadLetteredData(
            stream_sequence=seq, subject=subject, consumer=consumer, reason=reason[:500]
        ),
        id=derive_id("dead-letter", consumer, str(seq)),
        source="router" if consumer.startswith("router") else "notifier",
        incident_id=incident,
        school_id=school,
        now=now,
    )


async def dead_letter(event_log: EventLog, msg: NatsMessage, consumer: str, reason: str) -> None:
    """Append the `message.dead_lettered` event for `msg` (the caller then terminates it)."""
    raw = msg.raw_message
    seq = raw.metadata.sequence.stream
    event = dead_letter_event(
        consumer=consumer, seq=seq, subject=raw.subject, reason=reason, now=datetime.now(UTC)
    )
    await event_log.append(event)
    log.error(
        "message.dead_lettered",
        consumer=consumer,
        seq=seq,
        subject=raw.subject,
        reason=reason[:200],
    )


async def run_handler(
    msg: NatsMessage,
    *,
    event_log: EventLog,
    consumer: str,
    expect: type[Event],
    handle: Handler,
    error_delay: float = 2.0,
) -> None:
    """Parse `msg` as an `expect` event and hand it to `handle`, then ack, nack with a delay,
    or dead-letter and terminate it (see the module docstring)."""
    try:
        event = parse_stored(msg.raw_message.data, msg.raw_message.subject)
        if not isinstance(event, expect):
            raise EventDecodeError(
                f"expected {expect.model_fields['type'].default}, got {event.type}"
            )
    except EventDecodeError as exc:
        try:
            await dead_letter(event_log, msg, consumer, str(exc))
        except Exception:
            log.exception("dead_letter.publish_failed", consumer=consumer)
            await msg.nack(delay=error_delay)
            return
        await msg.reject()
        return
    try:
        delay = await handle(event, msg)
    except Exception:
        log.exception(
            "handler.failed", consumer=consumer, event_id=event.id, incident=event.incident_id
        )
        await msg.nack(delay=error_delay)
        return
    if delay is None:
        await msg.ack()
    else:
        await msg.nack(delay=delay)
