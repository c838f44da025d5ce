"""NATS JetStream: the contract streams (DESIGN §3), provisioning, publishing and reading.

Streams and durable consumers are created only by `dooralert provision`; services bind to
them and never change their config.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError

from schemas.events import Event, parse_event, serialize_event, subject_for
from services.common.logging import get_logger

log = get_logger("dooralert.streams")
T = TypeVar("T")

STREAM = "DOORALERT"
TIMERS_STREAM = "DOORALERT_TIMERS"
CHECKPOINTS_STREAM = "DOORALERT_CHECKPOINTS"
DELIVERIES_BUCKET = "DOORALERT_DELIVERIES"
SUBJECT_PREFIX = "dooralert"
DUPLICATE_WINDOW_S = 60 * 60.0  # one hour: covers any redelivery and a cluster failover


class IncompleteRead(Exception):
    """A read of the log stopped before every stored message arrived; try again."""


class ProvisionError(Exception):
    """An existing stream differs from the contract in a way provisioning will not weaken."""


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=STREAM,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            deny_delete=True,
            deny_purge=True,
            allow_rollup_hdrs=False,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=0,
        ),
        StreamConfig(
            name=TIMERS_STREAM,
            subjects=["dooralert_timers.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_msg_schedules=True,
            allow_rollup_hdrs=True,  # the server turns this on for message schedules
        ),
        StreamConfig(
            name=CHECKPOINTS_STREAM,
            subjects=["dooralert_checkpoints.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            deny_delete=True,
            deny_purge=True,
            allow_rollup_hdrs=False,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


TIMER_FIRED_PREFIX = "dooralert_timers.fired"
TIMER_SCHEDULE_PREFIX = "dooralert_timers.schedule"


def consumer_configs() -> list[tuple[str, ConsumerConfig]]:
    return [(STREAM, c) for c in _event_consumers()] + [
        (
            TIMERS_STREAM,
            ConsumerConfig(
                durable_name="router-timers",
                filter_subject=f"{TIMER_FIRED_PREFIX}.>",
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30.0,
                max_deliver=50,
            ),
        )
    ]


def _event_consumers() -> list[ConsumerConfig]:
    return [
        ConsumerConfig(
            durable_name="router",
            filter_subject=f"{SUBJECT_PREFIX}.*.*.encounter.reported",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=20,
            max_ack_pending=1000,
        ),
        ConsumerConfig(
            durable_name="notifier",
            filter_subject=f"{SUBJECT_PREFIX}.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=60.0,
            # The notifier stops retrying at DOORALERT_MAX_ATTEMPTS and records a permanent
            # failure itself; this is only the server's backstop.
            max_deliver=100,
            max_ack_pending=1000,
        ),
        ConsumerConfig(
            durable_name="router-followups",
            filter_subjects=[
                f"{SUBJECT_PREFIX}.*.*.encounter.updated",
                f"{SUBJECT_PREFIX}.*.*.incident.resolved",
                f"{SUBJECT_PREFIX}.*.*.notification.failed",
            ],
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=20,
            max_ack_pending=1000,
        ),
    ]


def _weakenings(have: StreamConfig, want: StreamConfig) -> list[str]:
    out = []
    for flag in ("deny_delete", "deny_purge", "allow_msg_schedules"):
        if getattr(have, flag) and not getattr(want, flag):
            out.append(f"{flag} would be turned off")
    if have.allow_rollup_hdrs is False and want.allow_rollup_hdrs:
        out.append("allow_rollup_hdrs would be turned on")
    if (have.duplicate_window or 0) > (want.duplicate_window or 0):
        out.append(
            f"duplicate_window would shrink from {have.duplicate_window}s to "
            f"{want.duplicate_window}s"
        )
    if have.storage != want.storage:
        out.append(f"storage would change from {have.storage} to {want.storage}")
    if set(have.subjects or []) - set(want.subjects or []):
        out.append(
            f"subjects would lose {sorted(set(have.subjects or []) - set(want.subjects or []))}"
        )
    return out


_FLAGS = frozenset({"deny_delete", "deny_purge", "allow_rollup_hdrs", "allow_msg_schedules"})


def _differs(have: StreamConfig, want: StreamConfig) -> bool:
    keys = (  # noqa
        "subjects",
        "deny_delete",
        "deny_purge",
        "allow_rollup_hdrs",
        "duplicate_window",
        "allow_msg_schedules",
        "storage",
        "num_replicas",
    )
    return any(
        bool(getattr(have, k)) != bool(getattr(want, k))
        if k in _FLAGS
        else getattr(have, k) != getattr(want, k)
        for k in keys
    )


async def provision(js: JetStreamContext, *, replicas: int = 1) -> list[str]:
    """Create or strengthen the streams, consumers and KV bucket. Idempotent."""
    actions: list[str] = []
    for want in stream_configs(replicas):
        assert want.name is not None
        try:
            info = await js.stream_info(want.name)
        except NotFoundError:
            await js.add_stream(want)
            actions.append(f"created stream {want.name}")
            continue
        have = info.config
        weak = _weakenings(have, want)
        if weak:
            raise ProvisionError(
                f"stream {want.name} exists with a stronger config; refusing to weaken it: "
                + "; ".join(weak)
            )
        if _differs(have, want):
            # Retention (max_age, max_bytes) is a deploy decision: keep what the operator set.
            want.max_age = have.max_age
            want.max_bytes = have.max_bytes
            await js.update_stream(want)
            actions.append(f"updated stream {want.name}")
        else:
            actions.append(f"stream {want.name} ok")
    for stream, consumer in consumer_configs():
        await js.add_consumer(stream, consumer)
        actions.append(f"consumer {consumer.durable_name} ok")
    try:
        await js.key_value(DELIVERIES_BUCKET)
        actions.append(f"bucket {DELIVERIES_BUCKET} ok")
    except (NotFoundError, Exception) as exc:  # nats-py raises BucketNotFoundError
        if exc.__class__.__name__ not in ("BucketNotFoundError", "NotFoundError"):
            raise
        from nats.js.api import KeyValueConfig

        await js.create_key_value(
            KeyValueConfig(
                bucket=DELIVERIES_BUCKET, history=1, storage=StorageType.FILE, replicas=replicas
            )
        )
        actions.append(f"created bucket {DELIVERIES_BUCKET}")
    return actions


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


# What a JetStream request raises while a cluster elects a leader or a connection is being
# re-established: no stream leader answers (503 no responders), JetStream answers 503
# unavailable, or nothing answers before the timeout.
TRANSIENT_NATS_ERRORS = (
    NatsTimeoutError,
    NoRespondersError,
    ConnectionClosedError,
    asyncio.TimeoutError,
    NoStreamResponseError,
    ServiceUnavailableError,
)


async def retrying(
    op: Callable[[], Awaitable[T]], *, retry_for: float, what: str, **context: object
) -> T:
    """Run a JetStream request, retrying transient failures (backoff 0.1 s doubling to 0.5 s)
    until `retry_for` seconds have passed; then the last error is raised."""
    deadline = time.monotonic() + retry_for
    delay = 0.1
    while True:
        try:
            return await op()
        except TRANSIENT_NATS_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(f"{what}.retry", delay=delay, error=type(exc).__name__, **context)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


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


@dataclass(frozen=True)
class StoredMessage:
    """One DOORALERT message exactly as stored."""

    seq: int
    subject: str
    time: datetime
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def event(self) -> Event:
        return parse_event(self.data)


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
        except Exception as exc:  # noqa: BLE001 - any failure: the cursor can't be trusted
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


class TailReset(Exception):
    """A StreamTail lost its place; start a new one."""


async def read_incident(js: JetStreamContext, incident_id: str) -> list[Event]:
    msgs = await read_messages(js, f"{SUBJECT_PREFIX}.*.{incident_id}.>")
    events = []
    for m in msgs:
        try:
            events.append(m.event())
        except ValueError:
            log.warning("event.unreadable", seq=m.seq, subject=m.subject)
    return events


async def schedule_timer(
    js: JetStreamContext,
    *,
    school_id: str,
    incident_id: str,
    tier: int,
    at: datetime,
    msg_id: str,
) -> None:
    """A durable deadline: DOORALERT_TIMERS delivers the payload to the fired subject at `at`.

    The schedule survives restarts of every service; the same msg_id is dropped as a duplicate.
    """
    now = datetime.now(UTC)
    # Whole seconds, rounded up, and never in the past (the router may be catching up).
    fire = max(at, now + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)
    payload = json.dumps(
        {
            "incident_id": incident_id,
            "school_id": school_id,
            "tier": tier,
            "deadline": at.isoformat(),
        }
    ).encode()
    key = f"{school_id}.{incident_id}.{tier}"
    await js.publish(
        f"{TIMER_SCHEDULE_PREFIX}.{key}",
        payload,
        stream=TIMERS_STREAM,
        timeout=5.0,
        headers={
            "Nats-Schedule": "@at " + fire.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Nats-Schedule-Target": f"{TIMER_FIRED_PREFIX}.{key}",
            "Nats-Msg-Id": msg_id,
        },
    )


async def get_last(js: JetStreamContext, subject: str, *, retry_for: float = 20.0) -> bytes | None:
    """The payload of the last message on an exact subject, or None (retried like a publish)."""

    async def op() -> bytes | None:
        try:
            msg = await js.get_last_msg(STREAM, subject)
        except NotFoundError:
            return None
        return msg.data

    return await retrying(op, retry_for=retry_for, what="get_last", subject=subject)
