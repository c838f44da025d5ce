"""Held pull requests: a durable consumer's messages handed over as the server delivers them.

FastStream's pull subscribers call nats-py's `fetch` in a loop. Each call sends a `no_wait`
probe (answered "no messages" when nothing is pending: one status message more per call), then
a request the server holds; each batch ends the request, and the next message waits for the
next call's two round trips. A concurrent subscriber then hands every message through an anyio
memory stream to a worker task group. Between a notification request being stored and its
handler starting that cost 1.2-1.7 ms on this machine when idle, and ~6 of the ~30 NATS
messages per report in a burst were the probes' answers.

`HeldPull` keeps pull requests held at the server instead. Each asks for up to `capacity`
messages with an expiry and idle heartbeats; each message is handed to `handle` in its own task
as it arrives; one request is held at a time, and once it has ended (filled or expired) a new
one asks for what is not in hand, when that is at least half the capacity (`_due` says why one
at a time: processes sharing a consumer then take turns evenly). Nothing waits for a worker:
the requests never ask for more than `capacity` minus what is in hand, so a message's ack wait
runs while it is being worked on, not while it queues.

Liveness: the server sends a heartbeat while a request is held and idle, and a status when it
ends (408 at its expiry, 409 when the consumer is deleted, changes leader or the server shuts
down), with the count it did not deliver (`Nats-Pending-Messages`). A request that falls
silent for `heartbeat * MISSED_BEATS` seconds, or that was held over a reconnect of the
client, is counted as gone and asked again: a lost request delays delivery by seconds, never
stops it.

On `close`, no new requests go out, the requests held at the server are ended (the inbox's
interest removed there: `_end_requests` says why) and what is in hand is finished (up to
`grace` seconds). A message still in flight on a request held from before is nacked at once,
so another process (or this one's successor) gets it now rather than after the ack wait.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StatusCode

from services.runtime.logging import get_logger

log = get_logger("dooralert.pull")

MISSED_BEATS = 2.5  # heartbeats missed before a held request counts as gone
_PENDING = "Nats-Pending-Messages"  # a request's end: what it did not deliver
_RETRY = 1.0  # seconds before asking again after an error status

Handle = Callable[[Msg], Awaitable[None]]


class HeldPull:
    """Hands a durable pull consumer's messages to `handle` as they arrive (see the module
    docstring). `run(psub)` until cancelled; `close(grace)` to finish what is in hand."""

    def __init__(
        self,
        handle: Handle,
        *,
        capacity: int,
        name: str,
        expires: float = 30.0,
        heartbeat: float = 2.0,
        arrived: Callable[[Msg], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.handle, self.capacity, self.name = handle, capacity, name
        # Called for each message as it is taken off the inbox, before its handler's task
        # starts (the notifier starts its delivery record reads there, all of a socket read's
        # messages in one write).
        self.arrived = arrived
        self.expires, self.heartbeat = expires, heartbeat
        self._refill = max(1, capacity // 2)  # the least a new request asks for
        self.outstanding = 0  # asked for and neither delivered nor ended by the server
        self.in_hand: set[asyncio.Task[None]] = set()
        self.requests = 0  # pull requests sent (tests, the benchmark)
        self.closed = False
        self._psub: JetStreamContext.PullSubscription | None = None
        self._heard = 0.0  # loop time anything last came on the inbox
        self._reconnects = 0
        self._retry_at = 0.0
        self._watching: asyncio.TimerHandle | None = None  # the next `_watch`

    async def run(self, psub: JetStreamContext.PullSubscription) -> None:
        """Ask for messages and hand them over until cancelled (a FastStream subscriber's
        consume task: see `hold_pulls`)."""
        self._psub = psub
        # nats-py 2.16 keeps a pull subscription's inbox queue private: the messages the
        # requests below bring (and the server's statuses) arrive there.
        queue: asyncio.Queue[Msg] = psub._sub._pending_queue
        loop = asyncio.get_running_loop()
        self.outstanding = 0
        self._heard = loop.time()
        self._reconnects = psub._nc.stats["reconnects"]
        self._watching = loop.call_later(self.heartbeat, self._watch, loop)
        try:
            await self._top_up()
            while True:
                msg = await queue.get()
                psub._sub._pending_size -= len(msg.data)
                self._heard = loop.time()
                if msg.headers and (status := msg.headers.get("Status")):
                    await self._status(msg, status, loop)
                elif self.closed:
                    await _nak(msg)
                    self.outstanding = max(0, self.outstanding - 1)
                    continue
                else:
                    self.outstanding = max(0, self.outstanding - 1)
                    if self.arrived is not None:
                        self._arrived(msg)
                    task = loop.create_task(self._handle(msg))
                    self.in_hand.add(task)
                    task.add_done_callback(self._done)
                if self._due():
                    await self._top_up()
        finally:
            if self._watching is not None:
                self._watching.cancel()

    async def close(self, grace: float) -> None:
        """Ask for nothing more, end the requests held at the server, and wait up to `grace`
        seconds for the messages in hand."""
        self.closed = True
        await self._end_requests()
        if self.in_hand:
            await asyncio.wait(set(self.in_hand), timeout=grace)

    async def _end_requests(self) -> None:
        """End the requests still held at the server by removing the inbox's interest there
        (the server drops a waiting request nobody listens to). Held on, they would bring
        each message given back with a nak straight back here, to be nacked again: every
        delivery counts towards the consumer's max_deliver (the router's is 20, its requests
        ask for 64), so a message arriving while the messages in hand finish could use all
        its deliveries up and never be handed to anyone. The subscription itself stays until
        FastStream's stop unsubscribes it (a second UNSUB the server ignores): what is in
        flight still arrives and is nacked: what the server sent before it took the UNSUB in
        comes before the flush's PONG, and is nacked before this returns (FastStream's stop
        then drops what the inbox holds, which would wait for its ack wait)."""
        psub = self._psub
        if psub is None:
            return
        nc, sid = psub._nc, psub._sub._id
        try:
            if not nc.is_closed and not nc.is_draining and not nc.is_reconnecting:
                await nc._send_unsubscribe(sid)
                await nc.flush(timeout=1)
        except Exception:  # the late arrivals' nacks are the fallback
            log.warning("pull.end_failed", consumer=self.name, exc_info=True)
        queue: asyncio.Queue[Msg] = psub._sub._pending_queue
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.0
        while not queue.empty() and loop.time() < until:  # the receive loop nacks them
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # the last one's nak is buffered once it is taken off

    def _due(self, least: int | None = None) -> bool:
        """Whether to ask for more: nothing is outstanding and at least half the capacity
        (`least`) is not in hand (so a busy consumer asks for half its capacity at a time, not
        for one message each time one is done: one request per message would be one more
        message per message for the server).

        One request held at a time: the server hands a consumer's messages to its waiting
        requests in turn, so processes sharing the consumer (two notifiers) share them evenly
        only while each holds one. Topping up while a request was still held gave a process
        two turns in three: a third of the reports' four emails went 3-1 between the two
        notifiers, the loaded one sending its three one after the other. In a burst the
        requests are filled as they arrive, so nothing is outstanding when this is asked."""
        if self.closed or asyncio.get_running_loop().time() < self._retry_at:
            return False
        if self.outstanding:
            return False
        free = self.capacity - len(self.in_hand)
        return free >= (self._refill if least is None else least)

    async def _top_up(self) -> None:
        psub = self._psub
        batch = self.capacity - len(self.in_hand) - self.outstanding
        if psub is None or batch <= 0 or self.closed or not psub._nc.is_connected:
            return
        body: dict[str, Any] = {
            "batch": batch,
            "expires": int(self.expires * 1e9),
            "idle_heartbeat": int(self.heartbeat * 1e9),
        }
        self.outstanding += batch
        self.requests += 1
        await psub._nc.publish(psub._nms, json.dumps(body).encode(), reply=psub._deliver)

    async def _status(self, msg: Msg, status: str, loop: asyncio.AbstractEventLoop) -> None:
        """A heartbeat (nothing to do), or the end of a request: what it did not deliver is
        no longer outstanding."""
        if status == StatusCode.CONTROL_MESSAGE:
            return
        headers = msg.headers or {}
        try:
            undelivered = int(headers.get(_PENDING, ""))
        except ValueError:
            undelivered = self.outstanding  # unknown: every request counts as ended
        self.outstanding = max(0, self.outstanding - undelivered)
        if status not in (StatusCode.REQUEST_TIMEOUT, StatusCode.NO_MESSAGES):
            description = headers.get("Description", "")
            # 409 (consumer deleted, leader change, server shutdown) and the like: the
            # consumer watch reports a consumer that stays gone; here, ask again shortly.
            log.warning("pull.ended", consumer=self.name, status=status, reason=description)
            self.outstanding = 0
            self._retry_at = loop.time() + _RETRY
            loop.call_later(_RETRY, self._kick)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every heartbeat: a request held over a reconnect, or silent past the missed
        beats, is counted as gone and asked again."""
        if self.closed or self._psub is None:
            return
        nc = self._psub._nc
        reconnected = nc.stats["reconnects"] != self._reconnects
        silent = loop.time() - self._heard > self.heartbeat * MISSED_BEATS
        if self.outstanding and (reconnected or silent):
            log.warning(
                "pull.lost",
                consumer=self.name,
                outstanding=self.outstanding,
                reason="reconnected" if reconnected else "no heartbeat",
            )
            self.outstanding = 0
            self._heard = loop.time()
        self._reconnects = nc.stats["reconnects"]
        # With nothing asked for, any free place is asked for here: messages held longer
        # than a heartbeat (a hanging target, up to its timeout) never leave the rest of the
        # capacity unasked for while messages wait in the stream.
        self._kick(least=1 if not self.outstanding else None)
        self._watching = loop.call_later(self.heartbeat, self._watch, loop)

    def _kick(self, least: int | None = None) -> None:
        """Ask for more outside the receive loop (after a pause, a loss or a finished
        message), when due."""
        if self._due(least):
            task = asyncio.ensure_future(self._top_up())
            task.add_done_callback(_quiet)

    def _arrived(self, msg: Msg) -> None:
        try:
            self.arrived(msg)  # type: ignore[misc]
        except Exception:
            # Never end the receive loop: the handler still gets the message.
            log.warning("pull.arrived_failed", consumer=self.name, exc_info=True)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        except Exception:
            # The handler owns the outcome (ack, nack, dead letter); what escapes it is
            # a bug: logged, and the message is redelivered after its ack wait.
            log.exception("pull.handler_failed", consumer=self.name)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_hand.discard(task)
        if not task.cancelled():
            task.exception()
        self._kick()


async def _nak(msg: Msg) -> None:
    try:
        await msg.nak()
    except Exception:  # redelivered after its ack wait instead
        log.warning("pull.nak_failed", exc_info=True)


def _quiet(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("pull.request_failed", error=type(exc).__name__)


def hold_pulls(subscriber: Any, held: HeldPull) -> bool:
    """Make a FastStream pull subscriber consume through `held` instead of its fetch loop:
    FastStream still binds the durable consumer (and unbinds it on stop), and its consume
    task runs `held.run` (restarted by FastStream should it fail). Under `TestNatsBroker`,
    which never binds, the subscriber's own path is used. False (and nothing changed) for a
    FastStream without the private `_consume_pull` this replaces. A subscription without the
    nats-py internals `run` uses (another nats-py) is consumed by FastStream's own fetch loop:
    `run` would fail at once, every time FastStream restarted it, and nothing be consumed."""
    original = getattr(subscriber, "_consume_pull", None)
    if not callable(original):
        return False

    async def consume_pull(cb: Any = None) -> None:
        psub = subscriber.subscription
        if not _held_pull_works(psub):
            log.warning("pull.unavailable", consumer=held.name, action="fetch loop")
            await original(cb=cb)
            return
        await held.run(psub)

    subscriber._consume_pull = consume_pull
    return True


def _held_pull_works(psub: Any) -> bool:
    """Whether `psub` has what `HeldPull.run` uses of nats-py's (2.16) pull subscription."""
    sub, nc = getattr(psub, "_sub", None), getattr(psub, "_nc", None)
    return (
        isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue)
        and isinstance(getattr(sub, "_pending_size", None), int)
        and isinstance(getattr(psub, "_nms", None), str)
        and isinstance(getattr(psub, "_deliver", None), str)
        and isinstance(getattr(nc, "stats", None), dict)
        and callable(getattr(nc, "publish", None))
    )
