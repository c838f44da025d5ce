"""Dead letters from the server: messages a consumer gave up on after `max_deliver` tries.

Such messages stay in the stream; the server only says so on a core-NATS advisory
(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.DOORALERT.<consumer>`, DESIGN §8). This turns each
advisory into a `message.dead_lettered` event. The event id derives from the consumer and the
stream sequence (as in services/eventlog/consumer.py), so several notifier processes hearing the
same advisory append one event. Advisories are not stored: one sent while no notifier runs is
lost (the message itself is still in the stream).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext

from schemas.events import MessageDeadLettered
from services.eventlog import STREAM
from services.eventlog.consumer import dead_letter_event
from services.eventlog.interface import EventLog
from services.runtime.logging import get_logger

log = get_logger("dooralert.notifier.deadletters")
ADVISORY_SUBJECT = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.*"


def advisory_event(advisory: dict[str, Any], subject: str, *, now: datetime) -> MessageDeadLettered:
    """The event for one max-deliveries advisory (pure)."""
    return dead_letter_event(
        consumer=str(advisory.get("consumer", "unknown")),
        seq=int(advisory["stream_seq"]),
        subject=subject,
        now=now,
        reason=f"max deliveries reached ({advisory.get('deliveries', '?')} attempts)",
    )


async def record_advisory(
    payload: bytes, *, event_log: EventLog, js: JetStreamContext
) -> MessageDeadLettered | None:
    """Append the `message.dead_lettered` event for one advisory (None: unreadable advisory).

    The advisory names only a stream sequence; the `EventLog` has no read by sequence, so the
    message's subject is looked up on JetStream itself."""
    try:
        advisory = json.loads(payload)
        seq = int(advisory["stream_seq"])
    except (ValueError, KeyError, TypeError):
        log.warning("advisory.unreadable")
        return None
    try:
        subject = (await js.get_msg(STREAM, seq)).subject or "unknown"
    except Exception:  # noqa: BLE001 - record it even when the message cannot be read back
        subject = "unknown"
    event = advisory_event(advisory, subject, now=datetime.now(UTC))
    await event_log.append(event)
    log.error(
        "message.dead_lettered",
        consumer=event.data.consumer,
        seq=seq,
        subject=subject,
        reason=event.data.reason,
    )
    return event
