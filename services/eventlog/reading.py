"""Reading the log back on NATS JetStream: throwaway consumers that drain what is stored now,
long-lived tails and readers from a sequence, and single look-ups.

Every read is through a consumer this module creates (ephemeral, unacknowledged, in memory);
the durable consumers of the contract belong to the services.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StatusCode
from nats.js.errors import APIError, NotFoundError

from schemas.events import Event, SubjectMismatch
from services.eventlog.contract import STREAM, SUBJECT_PREFIX
from services.eventlog.interface import IncompleteRead, StoredMessage, TailReset
from services.eventlog.retry import retrying
from services.runtime.logging import get_logger

log = get_logger("dooralert.eventlog")


def stored(m: Msg) -> StoredMessage:
    """A fetched JetStream message as the log stored it."""
    md = m.metadata
    return StoredMessage(
        seq=md.sequence.stream,
        subject=m.subject,
        time=md.timestamp,
        data=m.data,
        headers=dict(m.headers or {}),
    )


def from_seq_config(start_seq: int, *, inactive_threshold: float = 30.0) -> ConsumerConfig:
    """An ephemeral, unacknowledged, in-memory consumer from `start_seq` on.

    Ephemeral on purpose: a reader that must know where it stands (the audit ledger) records
    it itself, so there is no server-side cursor that could disagree.
    """
    return ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 1 else DeliverPolicy.ALL,
        opt_start_seq=start_seq if start_seq > 1 else None,
        inactive_threshold=inactive_threshold,
        mem_storage=True,
    )


async def consume_batches(
    js: JetStreamContext,
    subject: str,
    *,
    config: ConsumerConfig,
    stream: str = STREAM,
    batch: int = 500,
) -> AsyncGenerator[list[Msg], None]:
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
        pending = info.num_pending or 0
        while pending > 0:
            try:
                msgs = await psub.fetch(min(pending, batch), timeout=5)
            except NatsTimeoutError:
                # Never hand back a silently short read: a fold or export over it would lie.
                raise IncompleteRead(f"{pending} message(s) on {subject} not delivered") from None
            if not msgs:
                raise IncompleteRead(f"{pending} message(s) on {subject} not delivered")
            yield msgs
            pending = msgs[-1].metadata.num_pending or 0
    finally:
        try:
            # The name from the first consumer_info: asking again cost one more round trip.
            await js.delete_consumer(stream, name or (await psub.consumer_info()).name)
        except Exception:  # noqa: BLE001 - it expires by itself after inactive_threshold
            pass
        await psub.unsubscribe()


async def read_from(
    js: JetStreamContext,
    *,
    stream: str = STREAM,
    subject: str = f"{SUBJECT_PREFIX}.>",
    start_seq: int = 1,
    batch: int = 1000,
) -> AsyncGenerator[list[Msg], None]:
    """Every message of `stream` on `subject` stored now from `start_seq` on, in stream
    order, in batches (the raw messages: the audit hashes their exact bytes)."""
    async for msgs in consume_batches(
        js, subject, config=from_seq_config(start_seq), stream=stream, batch=batch
    ):
        yield msgs


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
        opt_start_time=since,
        inactive_threshold=30.0,
        mem_storage=True,
        headers_only=headers_only or None,
    )
    out: list[StoredMessage] = []
    async for msgs in consume_batches(js, subject, config=config, batch=batch):
        out.extend(stored(m) for m in msgs)
    return out


async def read_incident(js: JetStreamContext, incident_id: str) -> list[Event]:
    """Every readable event of one incident, in log order (unreadable ones, and those that are
    not what their subject says, logged and skipped: never folded)."""
    msgs = await read_messages(js, f"{SUBJECT_PREFIX}.*.{incident_id}.>")
    return readable_events(msgs)


def readable_events(messages: Sequence[StoredMessage]) -> list[Event]:
    """The events of `messages` that can be read and are what their subjects say; the others
    logged (sequence and subject, never the payload) and left out."""
    events = []
    for m in messages:
        try:
            events.append(m.event())
        except SubjectMismatch as exc:
            # A forgery or a bug: a reader that cannot publish a dead letter makes it loud here.
            log.error("event.subject_mismatch", seq=m.seq, subject=m.subject, reason=str(exc))
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


async def subscribe_from(
    js: JetStreamContext,
    start_seq: int,
    *,
    subject: str = f"{SUBJECT_PREFIX}.>",
    inactive_threshold: float = 60.0,
) -> JetStreamContext.PullSubscription:
    """A long-lived reader of DOORALERT from `start_seq` on, for a caller that follows the log
    and fetches from it itself (the audit ledger)."""
    return await js.pull_subscribe(
        subject,
        stream=STREAM,
        config=from_seq_config(start_seq, inactive_threshold=inactive_threshold),
    )


# Status codes that end a pull request: nothing (more) to deliver now.
_PULL_DONE = (StatusCode.NO_MESSAGES, StatusCode.REQUEST_TIMEOUT)


async def pull_now(
    psub: JetStreamContext.PullSubscription, batch: int, *, timeout: float = 5.0
) -> list[Msg]:
    """What the consumer of `psub` has to deliver now, up to `batch` messages, in one round
    trip: a pull request with `no_wait` and no expiry, which the server answers at once with
    the pending messages, then (fewer than `batch`) a "no messages" status.

    nats-py's `fetch` always puts an expiry on its first request, and the server then holds
    a request that finds nothing pending for the whole expiry: a reader that must not wait
    asked consumer_info for num_pending first, one more round trip per read. A message that
    does not come within `timeout` raises `nats.errors.TimeoutError`; an error status (the
    consumer is gone: 503 no responders, 409) raises `nats.js.errors.APIError`.
    """
    # The subscription's own inbox and pull subject (nats-py 2.16 keeps them private).
    await psub._nc.publish(
        psub._nms, json.dumps({"batch": batch, "no_wait": True}).encode(), reply=psub._deliver
    )
    out: list[Msg] = []
    while len(out) < batch:
        msg = await psub._sub.next_msg(timeout=timeout)
        status = JetStreamContext.is_status_msg(msg)
        if status is None:
            out.append(msg)
        elif status in _PULL_DONE:
            break
        elif status != StatusCode.CONTROL_MESSAGE:  # a heartbeat: keep waiting
            raise APIError.from_msg(msg)
    return out


class _Cursor:
    """One subject's consumer of a `StreamTail`, and what it fetched past the tail's cut."""

    def __init__(self, psub: JetStreamContext.PullSubscription) -> None:
        self.psub = psub
        self.delivered = 0  # consumer sequence of the last message received
        self.held: list[StoredMessage] = []  # fetched, stored after the last call's cut

    async def fetch_pending(self, batch: int) -> None:
        """Everything the consumer has pending now, onto `held`: one round trip when fewer
        than `batch` are new (no consumer_info first; see `pull_now`)."""
        while True:
            msgs = await pull_now(self.psub, batch)
            for m in msgs:
                consumer_seq = m.metadata.sequence.consumer
                if consumer_seq != self.delivered + 1:
                    raise TailReset(f"consumer skipped from {self.delivered} to {consumer_seq}")
                self.delivered = consumer_seq
                self.held.append(stored(m))
            if len(msgs) < batch or not msgs[-1].metadata.num_pending:
                return

    def take(self, cut: int | None) -> list[StoredMessage]:
        """The held messages stored up to `cut` (all with None); the later ones kept."""
        if cut is None:
            out, self.held = self.held, []
            return out
        out = [m for m in self.held if m.seq <= cut]
        self.held = self.held[len(out) :]
        return out


class StreamTail:
    """A long-lived cursor over the messages stored on `subjects`: `read_new()` returns those
    appended since the previous call, in stream order (the first call: those stored at or
    after `since`).

    `read_messages` creates, drains and deletes a consumer per call, re-reading the whole
    window each time; the router called it on every report, so a burst of N reports cost
    O(N^2) messages fetched plus 3 consumer API calls each. A tail costs one pull request
    per subject per call (`pull_now`: the subjects' requests go out together, one round
    trip, no consumer_info), plus the stream_info of the cut below with several subjects,
    and returns the same snapshot: every message stored before the call. Should a consumer
    vanish (server restart, idle past `inactive_threshold`) or its deliveries skip one (a
    lost fetch reply), `read_new` raises `TailReset` and the caller starts over with a new tail.

    Each subject has a consumer of its own (one filter each), not one consumer with several
    filters: on a log of a million events the server delivered a window of 54,000 reports
    to a two-filter consumer 5-7x slower than to a one-filter one (benchmarks/flat_log.py).
    With more than one subject, each call first takes the stream's last sequence as its cut
    and returns only messages up to it, the rest kept for the next call, so the subjects'
    messages come out as one snapshot in stream order, never one subject's ahead.
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
        self._cursors: list[_Cursor] = []

    @property
    def _psub(self) -> JetStreamContext.PullSubscription | None:
        """The first subject's subscription (None before the first read or after a reset)."""
        return self._cursors[0].psub if self._cursors else None

    async def _open(self) -> list[_Cursor]:
        if not self._cursors:
            config = ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=self.since,
                inactive_threshold=self.inactive_threshold,
                mem_storage=True,
            )
            for subject in self.subjects:
                psub = await self.js.pull_subscribe(subject, stream=STREAM, config=config)
                self._cursors.append(_Cursor(psub))
        return self._cursors

    async def read_new(self) -> list[StoredMessage]:
        """The messages stored since the previous call (see the class docstring)."""
        try:
            cut: int | None = None
            if len(self.subjects) > 1:
                cut = (await self.js.stream_info(STREAM)).state.last_seq
            cursors = await self._open()
            await asyncio.gather(*(c.fetch_pending(self.batch) for c in cursors))
        except TailReset:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise TailReset(f"{type(exc).__name__}: {exc}") from exc
        if len(cursors) == 1:
            return cursors[0].take(cut)
        return sorted((m for c in cursors for m in c.take(cut)), key=lambda m: m.seq)

    async def close(self) -> None:
        """Delete the consumers (they would expire by themselves) and stop the subscriptions."""
        cursors, self._cursors = self._cursors, []
        for c in cursors:
            try:
                await self.js.delete_consumer(STREAM, (await c.psub.consumer_info()).name)
            except Exception:  # noqa: BLE001 - it expires by itself after inactive_threshold
                pass
            try:
                await c.psub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already gone
                pass
