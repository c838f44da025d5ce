"""Publishes sent together (services/eventlog/jetstream.py `send_together`, the router's
per-report path): on a real nats-server each is stored in the order sent and resolves with its
PubAck; a publish answered otherwise (no responders, an error, nothing within the timeout)
is handed to its retry, whose outcome it takes; a context that is not nats-py's publishes
through its own `publish`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError

from schemas.events import EncounterReported, serialize_event
from services.eventlog import read_messages
from services.eventlog.jetstream import JetStreamEventLog, send_together
from tests.service.fakes import FakeJetStream
from tests.service.test_router_handler import encounter


def reports(n: int) -> list[EncounterReported]:
    return [encounter(f"inc-{i}") for i in range(n)]


async def test_events_sent_together_are_stored_in_order_each_with_its_pub_ack(
    js: JetStreamContext,
) -> None:
    log = JetStreamEventLog(js, publish_timeout=2.0, retry_for=1.0)
    events = reports(5)
    acks = [await f for f in await log.send(events)]
    assert [a.seq for a in acks] == [1, 2, 3, 4, 5]
    assert not any(a.duplicate for a in acks)
    stored = await read_messages(js)
    assert [m.data for m in stored] == [serialize_event(e) for e in events]
    # The same events again: the server drops them as duplicates of their ids.
    again = [await f for f in await log.send(events)]
    assert [a.seq for a in again] == [1, 2, 3, 4, 5] and all(a.duplicate for a in again)
    assert len(await read_messages(js)) == 5
    assert not js._nc._resp_map  # type: ignore[attr-defined]  # every reply handled


class Retry:
    def __init__(self, answer: PubAck | Exception) -> None:
        self.answer, self.calls = answer, 0

    async def __call__(self) -> PubAck:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_a_publish_not_acknowledged_is_handed_to_its_retry(js: JetStreamContext) -> None:
    nc: Any = js._nc  # type: ignore[attr-defined]

    async def error(msg: Msg) -> None:
        await msg.respond(json.dumps({"error": {"code": 400, "description": "no"}}).encode())

    async def silent(msg: Msg) -> None:
        return None

    await nc.subscribe("erring.x", cb=error)
    await nc.subscribe("silent.x", cb=silent)
    ok = PubAck(stream="X", seq=7)
    no_stream, erring, late, stored = (
        Retry(NoStreamResponseError()),
        Retry(ok),
        Retry(ok),
        Retry(ok),
    )
    futures = await send_together(
        js,
        [
            ("nostream.x", b"1", {"Nats-Msg-Id": "a"}, no_stream),
            ("erring.x", b"2", {"Nats-Msg-Id": "b"}, erring),
            ("silent.x", b"3", {"Nats-Msg-Id": "c"}, late),
            ("dooralert.hamline.inc-9.encounter.reported", b"{}", {"Nats-Msg-Id": "d"}, stored),
        ],
        timeout=0.3,
    )
    with pytest.raises(NoStreamResponseError):
        await futures[0]
    assert await futures[1] == ok
    assert await futures[2] == ok  # after the shared timeout
    assert (await futures[3]).stream == "DOORALERT"
    assert (no_stream.calls, erring.calls, late.calls, stored.calls) == (1, 1, 1, 0)
    assert not nc._resp_map


async def test_a_publish_the_client_refuses_is_retried(js: JetStreamContext) -> None:
    retry = Retry(PubAck(stream="X", seq=1))
    (future,) = await send_together(js, [("bad subject", b"", {}, retry)], timeout=1.0)
    assert await future == PubAck(stream="X", seq=1) and retry.calls == 1


async def test_another_context_publishes_through_its_own_publish() -> None:
    fake = FakeJetStream()
    log = JetStreamEventLog(fake, publish_timeout=0.05, retry_for=0.1)  # type: ignore[arg-type]
    acks = await asyncio.gather(*await log.send(reports(3)))
    assert [a.seq for a in acks] == [1, 2, 3] and fake.publishes == 3


async def test_a_publish_given_up_on_stops_retrying(js: JetStreamContext) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def retry() -> PubAck:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return PubAck(stream="X", seq=1)

    (future,) = await send_together(js, [("nostream.y", b"", {}, retry)], timeout=1.0)
    await asyncio.wait_for(started.wait(), 5)
    future.cancel()
    await asyncio.wait_for(stopped.wait(), 5)


async def test_the_router_sends_a_report_s_events_together_and_arms_its_deadline(
    js: JetStreamContext,
) -> None:
    from tests.integration.test_router_one_flush import deliver, stored, timer_armed

    event = encounter()
    msg = await deliver(js, event)  # type: ignore[arg-type]  # nats-py's own context
    assert msg.outcome == "ack"
    log = await stored(js)
    assert [t for _, t in log] == ["escalation.decided"] + ["notification.requested"] * 4
    seqs = [s for s, _ in log]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert await timer_armed(js)
    again = await deliver(js, event, delivered=2)  # type: ignore[arg-type]
    assert again.outcome == "ack"
    assert await stored(js) == log
    assert not js._nc._resp_map  # type: ignore[attr-defined]


async def test_a_client_without_the_internals_publishes_through_the_retries(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.eventlog import jetstream

    monkeypatch.setattr(jetstream, "CLIENT_INTERNALS", ("_no_such_internal",))
    retry = Retry(PubAck(stream="X", seq=3))
    (future,) = await send_together(js, [("dooralert.x", b"", {}, retry)], timeout=1.0)
    assert await future == PubAck(stream="X", seq=3) and retry.calls == 1


async def test_cancelled_inside_a_publish_leaves_nothing_waiting(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while nats-py holds a publish (flushing a full buffer): no answer left in the
    client's reply map, no retry started for the publishes already sent."""
    nc: Any = js._nc  # type: ignore[attr-defined]
    real_publish, held = nc.publish, asyncio.Event()
    calls = 0

    async def publish(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            held.set()
            await asyncio.sleep(30)  # the second publish blocks, as on a full buffer
        await real_publish(*args, **kwargs)

    monkeypatch.setattr(nc, "publish", publish)
    retried: list[int] = []

    async def retry() -> PubAck:
        retried.append(1)
        return PubAck(stream="X", seq=1)

    before = set(nc._resp_map)
    log = JetStreamEventLog(js, publish_timeout=0.3, retry_for=5.0)
    events = reports(3)
    publishes = [(*log.publish_of(e, 0.0)[:3], retry) for e in events]
    sending = asyncio.ensure_future(send_together(js, publishes, timeout=0.3))
    await asyncio.wait_for(held.wait(), 5)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await asyncio.sleep(0.6)  # past the timeout the first publish would have had
    assert set(nc._resp_map) <= before
    assert not retried
