"""The event log on NATS JetStream: appending with retry, and `JetStreamEventLog` (the
`EventLog` interface over both this and reading.py). Connecting is connection.py.

Streams and durable consumers are created only by `dooralert provision` (provision.py);
services bind to them and never change their config.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import PubAck

from schemas.events import Event, serialize_event, subject_for
from services.eventlog.contract import STREAM, SUBJECT_PREFIX, TIMERS_STREAM
from services.eventlog.direct import DirectLast
from services.eventlog.interface import Appended
from services.eventlog.reading import StreamTail, read_incident
from services.eventlog.retry import retrying


async def publish_event(
    js: JetStreamContext,
    event: Event,
    *,
    timeout: float = 2.0,
    retry_for: float = 20.0,
) -> PubAck:
    """Append an event to DOORALERT, retrying with the same Nats-Msg-Id until acknowledged.

    A retry after a lost PubAck is dropped by the server as a duplicate, so retrying is safe.

    Sized for a cluster losing the stream leader (tests/integration/test_cluster.py, 3 nodes,
    SIGKILL of the DOORALERT leader): writes fail for 5-8 s - a 2 s timeout if this client was
    connected to the dead node, then "no responders" (NoStreamResponseError, returned at once)
    until the survivors elect a leader; the raft election timeout alone is randomised up to
    9 s. `retry_for` 10 s left no margin over that, so the default (and
    DOORALERT_PUBLISH_RETRY_SECONDS) is 20 s. Backoff is capped at 0.5 s so the first
    publish after the election waits little.
    """
    payload = serialize_event(event)
    subject = subject_for(event, SUBJECT_PREFIX)
    return await retrying(
        lambda: js.publish(
            subject, payload, stream=STREAM, timeout=timeout, headers={"Nats-Msg-Id": event.id}
        ),
        retry_for=retry_for,
        what="publish",
        subject=subject,
        event_id=event.id,
    )


async def publish_events(js: JetStreamContext, events: Sequence[Event], **kw: float) -> None:
    """Append `events`: the first (the decision, escalation or pattern the rest follow from)
    alone, awaiting its PubAck; then the rest pipelined, all their PubAcks awaited.

    Every caller passes a head event followed by events that depend only on it (the
    notification requests it names), so the one order that matters - head stored before
    its requests - holds even if a request is retried; the requests' order among themselves
    carries no meaning. Pipelining them saves one round trip per request (a report's 1+k
    publishes took 1+k sequential round trips). Raises if any publish finally fails, after
    the others have settled, so the caller's message is not acked.
    """
    if not events:
        return
    await publish_event(js, events[0], **kw)
    if len(events) == 1:
        return
    results = await asyncio.gather(
        *(publish_event(js, e, **kw) for e in events[1:]), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


class JetStreamEventLog:
    """The `EventLog` on a NATS JetStream context (see interface.py)."""

    def __init__(
        self, js: JetStreamContext, *, publish_timeout: float = 2.0, retry_for: float = 20.0
    ) -> None:
        self.js = js
        self.publish_timeout = publish_timeout
        self.retry_for = retry_for
        self._last = DirectLast(js, STREAM)

    async def append(self, event: Event) -> Appended:
        """See `EventLog.append`."""
        ack = await publish_event(
            self.js, event, timeout=self.publish_timeout, retry_for=self.retry_for
        )
        return Appended(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def append_all(self, events: Sequence[Event]) -> None:
        """See `EventLog.append_all`."""
        await publish_events(
            self.js, events, timeout=self.publish_timeout, retry_for=self.retry_for
        )

    async def read_incident(self, incident_id: str) -> list[Event]:
        """See `EventLog.read_incident`."""
        return await read_incident(self.js, incident_id)

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        """See `EventLog.last`: a direct get (any current replica answers), and the stream
        leader's answer if that found nothing (direct.py); retried like a publish."""
        subject = f"{SUBJECT_PREFIX}.{school_id}.{incident_id}.{event_type}"
        return await retrying(
            lambda: self._last.get(subject),
            retry_for=self.retry_for,
            what="get_last",
            subject=subject,
        )

    def tail(self, subjects: Sequence[str], *, since: datetime) -> StreamTail:
        """See `EventLog.tail`."""
        return StreamTail(self.js, subjects, since=since)

    async def schedule(
        self, subject: str, payload: bytes, *, fire_at: datetime, target: str, msg_id: str
    ) -> None:
        """See `EventLog.schedule` (a DOORALERT_TIMERS message schedule)."""
        headers = {
            "Nats-Schedule": "@at " + fire_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Nats-Schedule-Target": target,
            "Nats-Msg-Id": msg_id,
        }
        await retrying(
            lambda: self.js.publish(
                subject, payload, stream=TIMERS_STREAM, timeout=5.0, headers=headers
            ),
            retry_for=self.retry_for,
            what="schedule",
            subject=subject,
        )
