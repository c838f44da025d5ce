"""The event log on NATS JetStream: appending with retry, and `JetStreamEventLog` (the
`EventLog` interface over both this and reading.py). Connecting is connection.py.

Streams and durable consumers are created only by `dooralert provision` (provision.py);
services bind to them and never change their config.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from itertools import count
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck

from schemas.events import Event, serialize_event, subject_for
from services.eventlog.contract import STREAM, SUBJECT_PREFIX, TIMERS_STREAM
from services.eventlog.direct import DirectLast
from services.eventlog.interface import Appended
from services.eventlog.reading import StreamTail, read_incident
from services.eventlog.request import CLIENT_INTERNALS
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


# The reply tokens of `send_together`'s publishes, under the client's request inbox (whose
# responses it routes by token): "p" and a number, never one of nats-py's own (a NUID and
# four hex digits, 26 characters), and cheaper to make than those.
_TOKENS = count(1)
# What `send_together` uses of nats-py's client (request.CLIENT_INTERNALS): a client without
# them (another version) has each publish made by its retry, as `publish_event` makes it.


def _pub_ack(msg: Msg) -> PubAck | None:
    """The PubAck a publish was answered with, or None for any other answer (no responders,
    an error): what `js.publish` returns, without its dataclass field scan."""
    if msg.headers and Header.STATUS in msg.headers:
        return None
    try:
        resp = json.loads(msg.data)
        if "error" in resp or "stream" not in resp or "seq" not in resp:
            return None
        return PubAck(
            stream=resp["stream"],
            seq=resp["seq"],
            domain=resp.get("domain"),
            duplicate=resp.get("duplicate"),
        )
    except (ValueError, TypeError):
        return None


async def send_together(
    js: JetStreamContext,
    publishes: Sequence[tuple[str, bytes, dict[str, str], Callable[[], Awaitable[PubAck]]]],
    *,
    timeout: float,
) -> list[asyncio.Future[PubAck]]:
    """Send every publish of `publishes` (subject, payload, headers, retry) now, in order (one
    flush), and return a future of each one's PubAck, without a task or a `wait_for` each.

    A publish answered with its PubAck within `timeout` (one timer for all of them) resolves
    with it. Any other outcome - no answer in time, no responders, an error answer, a publish
    the client refused - hands that publish to its `retry` (the caller's `retrying` loop under
    the same Nats-Msg-Id: a publish stored whose answer was lost is dropped as a duplicate),
    whose result or exception the future takes: a failure is handled exactly as `js.publish`
    inside `retrying` handles it, one attempt sooner.

    A context that is not nats-py's own (tests' fakes), or whose client lacks the internals
    this uses, is published through its `publish`: each retry in a task of its own, in order.
    """
    loop = asyncio.get_running_loop()
    out: list[asyncio.Future[PubAck]] = []
    nc: Any = getattr(js, "_nc", None)
    if type(js) is not JetStreamContext or not all(hasattr(nc, a) for a in CLIENT_INTERNALS):
        return [asyncio.ensure_future(retry()) for _, _, _, retry in publishes]
    if not nc._resp_sub_prefix:
        await nc._init_request_sub()
    reply = nc._resp_sub_prefix.decode()
    answers: list[asyncio.Future[Msg]] = []

    def retry_into(result: asyncio.Future[PubAck], retry: Callable[[], Awaitable[PubAck]]) -> None:
        task = asyncio.ensure_future(retry())

        def settle(t: asyncio.Future[PubAck]) -> None:
            if result.done():
                return
            if t.cancelled():
                result.cancel()
            elif (exc := t.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(t.result())

        task.add_done_callback(settle)
        # A caller that gives up on the publish (its future cancelled) stops its retries.
        result.add_done_callback(lambda r: task.cancel() if r.cancelled() else None)

    left = 0  # answers not settled yet: the timer is cancelled when none is left
    timer: asyncio.TimerHandle | None = None

    def answered(
        key: str, result: asyncio.Future[PubAck], retry: Callable[[], Awaitable[PubAck]]
    ) -> Callable[[asyncio.Future[Msg]], None]:
        def on_answer(answer: asyncio.Future[Msg]) -> None:
            nonlocal left
            nc._resp_map.pop(key, None)
            left -= 1
            if not left and timer is not None:
                timer.cancel()
            if result.done():
                return
            ack = None if answer.cancelled() or answer.exception() else _pub_ack(answer.result())
            if ack is not None:
                result.set_result(ack)
            else:
                retry_into(result, retry)

        return on_answer

    for subject, payload, headers, retry in publishes:
        result: asyncio.Future[PubAck] = loop.create_future()
        out.append(result)
        key = f"p{next(_TOKENS)}"
        answer: asyncio.Future[Msg] = loop.create_future()
        nc._resp_map[key] = answer
        try:
            await nc.publish(subject, payload, reply=reply + key, headers=headers)
        except Exception:  # noqa: BLE001 - the retry raises it (or its own) if it persists
            nc._resp_map.pop(key, None)
            retry_into(result, retry)
            continue
        except BaseException:
            # Cancelled inside a publish (nats-py flushing a full buffer): nothing of this call
            # is waited for any more - no answer kept in the client's map, no retry started.
            nc._resp_map.pop(key, None)
            for stored in out:
                stored.cancel()
            for answer in answers:
                answer.cancel()
            raise
        answer.add_done_callback(answered(key, result, retry))
        answers.append(answer)
        left += 1

    def expire() -> None:
        for answer in answers:
            if not answer.done():
                answer.cancel()  # no answer in time: its publish is retried

    if answers:
        timer = loop.call_later(timeout, expire)
    return out


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
        """See `EventLog.append`: `send` of the one event (its PubAck read without nats-py's
        request machinery - a token, a future and a `wait_for` each - and its retries
        `publish_event`'s, under the same Nats-Msg-Id)."""
        (stored,) = await self.send([event])
        ack = await stored
        return Appended(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def send(self, events: Sequence[Event]) -> list[asyncio.Future[PubAck]]:
        """Send `events` in order, in one flush, and return a future of each one's PubAck,
        as `append`'s publish would have returned (or raised) it: the first publishes share
        one timeout, the retries are `append`'s (`send_together`)."""
        start = time.monotonic()
        publishes = [self.publish_of(e, start) for e in events]
        return await send_together(self.js, publishes, timeout=self.publish_timeout)

    def publish_of(
        self, event: Event, start: float
    ) -> tuple[str, bytes, dict[str, str], Callable[[], Awaitable[PubAck]]]:
        """`append` of `event` as one publish for `send_together` (subject, payload, headers,
        and `append`'s retrying publish for what is left of `retry_for` since `start`)."""
        return (
            subject_for(event, SUBJECT_PREFIX),
            serialize_event(event),
            {"Nats-Msg-Id": event.id, Header.EXPECTED_STREAM: STREAM},
            self._retry(event, start),
        )

    def _retry(self, event: Event, start: float) -> Callable[[], Awaitable[PubAck]]:
        """`append`'s publish of `event`, retrying for what is left of `retry_for` since `start`."""

        def retry() -> Awaitable[PubAck]:
            left = max(0.0, self.retry_for - (time.monotonic() - start))
            return publish_event(self.js, event, timeout=self.publish_timeout, retry_for=left)

        return retry

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
        start = time.monotonic()

        def retry() -> Awaitable[PubAck]:
            return retrying(
                lambda: self.js.publish(
                    subject, payload, stream=TIMERS_STREAM, timeout=5.0, headers=dict(headers)
                ),
                retry_for=max(0.0, self.retry_for - (time.monotonic() - start)),
                what="schedule",
                subject=subject,
            )

        sent = {**headers, Header.EXPECTED_STREAM: TIMERS_STREAM}
        (ack,) = await send_together(self.js, [(subject, payload, sent, retry)], timeout=5.0)
        await ack
