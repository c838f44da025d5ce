"""The event log on NATS JetStream: connecting, appending with retry, and reading back.

Streams and durable consumers are created only by `dooralert provision` (provision.py);
services bind to them and never change their config.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
)
from nats.js.errors import NotFoundError

from schemas.events import Event, serialize_event, subject_for
from services.eventlog.contract import STREAM, SUBJECT_PREFIX, TIMERS_STREAM
from services.eventlog.interface import (
    Appended,
    IncompleteRead,
    StoredMessage,
    TailReset,
)
from services.eventlog.retry import retrying
from services.runtime.logging import get_logger

log = get_logger("dooralert.eventlog")


def server_urls(url: str | Sequence[str]) -> list[str]:
    """The servers in a DOORALERT_NATS_URL: one URL, or several separated by commas (the
    nodes of a cluster; the client fails over between them and learns the rest from INFO)."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    urls = [u.strip() for u in parts if u.strip()]
    if not urls:
        raise ValueError(f"no NATS server URL in {url!r}")
    return urls


async def connect(url: str | Sequence[str], *, name: str) -> Client:
    urls = server_urls(url)
    return await nats.connect(
        urls[0] if len(urls) == 1 else urls,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )


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


async def consume_batches(
    js: JetStreamContext,
    subject: str,
    *,
    config: ConsumerConfig,
    stream: str = STREAM,
    batch: int = 500,
) -> AsyncIterator[list[Msg]]:
    """Every message a throwaway consumer with `config` sees now, in stream order, in batches;
    the consumer is deleted afterwards (or expires by itself after its inactive threshold)."""
    # Creating the consumer is a JetStream API request: ride out a leader election like a
    # publish does rather than fail the caller's read.
    psub = await retrying(
        lambda: js.pull_subscribe(subject, stream=stream, config=config),
        retry_for=20.0,
        what="read.subscribe",
        subject=subject,
    )
    name: str | None = None
    try:
        info = await psub.consumer_info()
        name = info.name
        pending = info.num_pending
        while pending > 0:
            try:
                msgs = await psub.fetch(min(pending, batch), timeout=5)
            except NatsTimeoutError:
                # Never hand back a silently short read: a fold or export over it would lie.
                raise IncompleteRead(f"{pending} message(s) on {subject} not delivered") from None
            if not msgs:
                raise IncompleteRead(f"{pending} message(s) on {subject} not delivered")
            yield msgs
            pending = msgs[-1].metadata.num_pending
    finally:
        try:
            # The name from the first consumer_info: asking again cost one more round trip.
            await js.delete_consumer(stream, name or (await psub.consumer_info()).name)
        except Exception:  # noqa: BLE001 - it expires by itself after inactive_threshold
            pass
        await psub.unsubscribe()


async def read_messages(
    js: JetStreamContext,
    subject: str = f"{SUBJECT_PREFIX}.>",
    *,
    batch: int = 500,
    since: datetime | None = None,
    headers_only: bool = False,
) -> list[StoredMessage]:
    """Every stored message on `subject` (stored at or after `since`), in stream order,
    through a throwaway consumer. `headers_only` skips payloads (subjects and times only)."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL if since is None else DeliverPolicy.BY_START_TIME,
        opt_start_time=None if since is None else since.isoformat(),
        inactive_threshold=30.0,
        mem_storage=True,
        headers_only=headers_only or None,
    )
    out: list[StoredMessage] = []
    async for msgs in consume_batches(js, subject, config=config, batch=batch):
        for m in msgs:
            md = m.metadata
            out.append(
                StoredMessage(
                    seq=md.sequence.stream,
                    subject=m.subject,
                    time=md.timestamp,
                    data=m.data,
                    headers=dict(m.headers or {}),
                )
            )
    return out


class StreamTail:
    """A long-lived cursor over the messages stored on `subjects`: `read_new()` returns those
    appended since the previous call, in stream order (the first call: those stored at or
    after `since`).

    `read_messages` creates, drains and deletes a consumer per call, re-reading the whole
    window each time; the router called it on every report, so a burst of N reports cost
    O(N^2) messages fetched plus 3 consumer API calls each. A tail costs one consumer_info
    round trip per call plus the new messages only, and returns the same snapshot: every
    message stored before the call. Should the consumer vanish (server restart, idle past
    `inactive_threshold`) or its deliveries skip one (a lost fetch reply), `read_new` raises
    `TailReset` and the caller starts over with a new tail.
    """

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Sequence[str],
        *,
        since: datetime,
        batch: int = 500,
        inactive_threshold: float = 300.0,
    ) -> None:
        self.js, self.subjects, self.since, self.batch = js, list(subjects), since, batch
        self.inactive_threshold = inactive_threshold
        self._psub: JetStreamContext.PullSubscription | None = None
        self._delivered = 0  # consumer sequence of the last message received

    async def _open(self) -> JetStreamContext.PullSubscription:
        if self._psub is None:
            self._psub = await self.js.pull_subscribe(
                self.subjects[0],
                stream=STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.NONE,
                    deliver_policy=DeliverPolicy.BY_START_TIME,
                    opt_start_time=self.since.isoformat(),
                    filter_subjects=self.subjects if len(self.subjects) > 1 else None,
                    inactive_threshold=self.inactive_threshold,
                    mem_storage=True,
                ),
            )
        return self._psub

    async def read_new(self) -> list[StoredMessage]:
        out: list[StoredMessage] = []
        try:
            psub = await self._open()
            pending = (await psub.consumer_info()).num_pending
            while pending > 0:
                msgs = await psub.fetch(min(pending, self.batch), timeout=5)
                for m in msgs:
                    md = m.metadata
                    if md.sequence.consumer != self._delivered + 1:
                        raise TailReset(
                            f"consumer skipped from {self._delivered} to {md.sequence.consumer}"
                        )
                    self._delivered = md.sequence.consumer
                    out.append(
                        StoredMessage(
                            seq=md.sequence.stream,
                            subject=m.subject,
                            time=md.timestamp,
                            data=m.data,
                            headers=dict(m.headers or {}),
                        )
                    )
                pending = msgs[-1].metadata.num_pending
        except TailReset:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise TailReset(f"{type(exc).__name__}: {exc}") from exc
        return out

    async def close(self) -> None:
        psub, self._psub = self._psub, None
        if psub is None:
            return
        try:
            await self.js.delete_consumer(STREAM, (await psub.consumer_info()).name)
        except Exception:  # noqa: BLE001 - it expires by itself after inactive_threshold
            pass
        try:
            await psub.unsubscribe()
        except Exception:  # noqa: BLE001 - connection already gone
            pass


async def read_incident(js: JetStreamContext, incident_id: str) -> list[Event]:
    msgs = await read_messages(js, f"{SUBJECT_PREFIX}.*.{incident_id}.>")
    events = []
    for m in msgs:
        try:
            events.append(m.event())
        except ValueError:
            log.warning("event.unreadable", seq=m.seq, subject=m.subject)
    return events


async def get_last(js: JetStreamContext, subject: str, *, retry_for: float = 20.0) -> bytes | None:
    """The payload of the last message on an exact subject, or None (retried like a publish)."""

    async def op() -> bytes | None:
        try:
            msg = await js.get_last_msg(STREAM, subject)
        except NotFoundError:
            return None
        return msg.data

    return await retrying(op, retry_for=retry_for, what="get_last", subject=subject)


class JetStreamEventLog:
    """The `EventLog` on a NATS JetStream context (see interface.py)."""

    def __init__(
        self, js: JetStreamContext, *, publish_timeout: float = 2.0, retry_for: float = 20.0
    ) -> None:
        self.js = js
        self.publish_timeout = publish_timeout
        self.retry_for = retry_for

    async def append(self, event: Event) -> Appended:
        ack = await publish_event(
            self.js, event, timeout=self.publish_timeout, retry_for=self.retry_for
        )
        return Appended(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def append_all(self, events: Sequence[Event]) -> None:
        await publish_events(
            self.js, events, timeout=self.publish_timeout, retry_for=self.retry_for
        )

    async def read_incident(self, incident_id: str) -> list[Event]:
        return await read_incident(self.js, incident_id)

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        subject = f"{SUBJECT_PREFIX}.{school_id}.{incident_id}.{event_type}"
        return await get_last(self.js, subject, retry_for=self.retry_for)

    def tail(self, subjects: Sequence[str], *, since: datetime) -> StreamTail:
        return StreamTail(self.js, subjects, since=since)

    async def schedule(
        self, subject: str, payload: bytes, *, fire_at: datetime, target: str, msg_id: str
    ) -> None:
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
