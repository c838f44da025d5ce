"""A closing held pull (services/eventlog/pull.py) on a real nats-server: a message that
arrives while the messages in hand finish is given back without being delivered again and
again to the closing process's own held requests (each delivery counts towards the
consumer's max_deliver: the router's is 20, its requests ask for 64)."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from services.eventlog import STREAM
from services.eventlog.pull import HeldPull, _held_pull_works

SUBJECT = "dooralert.hamline.inc-{}.notification.requested"
DURABLE = "held-close-test"


async def test_a_message_arriving_while_closing_is_not_redelivered_to_the_closing_process(js):  # type: ignore[no-untyped-def]
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            filter_subject="dooralert.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=20,
        ),
    )
    gate = asyncio.Event()
    first: list[Msg] = []

    async def slow(msg: Msg) -> None:
        first.append(msg)
        await gate.wait()
        await msg.ack()

    closing_one = HeldPull(slow, capacity=64, name=DURABLE)
    run_one = asyncio.create_task(
        closing_one.run(await js.pull_subscribe_bind(DURABLE, stream=STREAM))
    )
    await js.publish(SUBJECT.format(0), b"0", stream=STREAM)
    for _ in range(200):
        if first:
            break
        await asyncio.sleep(0.01)
    assert first
    closing = asyncio.create_task(closing_one.close(grace=5.0))
    await asyncio.sleep(0.05)
    # A report arrives while the one in hand finishes: the closing process gives it back.
    await js.publish(SUBJECT.format(1), b"1", stream=STREAM)
    await asyncio.sleep(0.5)
    gate.set()
    await asyncio.wait_for(closing, 2.0)
    run_one.cancel()
    await asyncio.gather(run_one, return_exceptions=True)
    await closing_one._psub.unsubscribe()  # type: ignore[union-attr]  # FastStream's stop

    # The successor gets it, delivered once or twice before, not max_deliver times.
    got: list[Msg] = []

    async def record(msg: Msg) -> None:
        got.append(msg)
        await msg.ack()

    successor = HeldPull(record, capacity=4, name=DURABLE)
    run_two = asyncio.create_task(
        successor.run(await js.pull_subscribe_bind(DURABLE, stream=STREAM))
    )
    try:
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.01)
        assert [m.data for m in got] == [b"1"], "never redelivered: max_deliver used up"
        assert got[0].metadata.num_delivered <= 3
    finally:
        run_two.cancel()


async def test_what_was_on_its_way_when_closing_goes_to_the_successor_at_once(js):  # type: ignore[no-untyped-def]
    # Nothing in hand: close returns at once and FastStream's stop then cancels the run and
    # unsubscribes. What the server had sent before it took the close in is nacked first,
    # not left to its ack wait (30 s here, the notifier's is 60 s).
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            filter_subject="dooralert.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
        ),
    )
    taken: list[bytes] = []

    async def take(msg: Msg) -> None:
        taken.append(msg.data)
        await msg.ack()

    one = HeldPull(take, capacity=64, name=DURABLE)
    psub = await js.pull_subscribe_bind(DURABLE, stream=STREAM)
    run_one = asyncio.create_task(one.run(psub))
    await asyncio.sleep(0.2)
    # A burst published by another connection, the close right behind it.
    nc2 = await nats.connect(js._nc.connected_url.geturl())
    try:
        for i in range(40):
            await nc2.publish(SUBJECT.format(i), str(i).encode())
        await nc2.flush()
    finally:
        await nc2.close()
    await one.close(grace=5.0)
    run_one.cancel()
    await asyncio.gather(run_one, return_exceptions=True)
    await psub.unsubscribe()

    got: list[bytes] = []

    async def record(msg: Msg) -> None:
        got.append(msg.data)
        await msg.ack()

    successor = HeldPull(record, capacity=64, name=DURABLE)
    run_two = asyncio.create_task(
        successor.run(await js.pull_subscribe_bind(DURABLE, stream=STREAM))
    )
    try:
        for _ in range(300):
            if len(taken) + len(got) >= 40:
                break
            await asyncio.sleep(0.01)
        assert sorted(taken + got, key=int) == [str(i).encode() for i in range(40)]
    finally:
        run_two.cancel()


async def test_messages_held_long_leave_no_free_place_unasked_for(js):  # type: ignore[no-untyped-def]
    # Three of four places held by a hanging target (up to its timeout): the fourth, less
    # than half the capacity, is still asked for within a heartbeat while a message waits.
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            filter_subject="dooralert.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
        ),
    )
    gate = asyncio.Event()
    done: list[bytes] = []

    async def handle(msg: Msg) -> None:
        if msg.data in (b"0", b"1", b"2"):
            await gate.wait()
        await msg.ack()
        done.append(msg.data)

    held = HeldPull(handle, capacity=4, name=DURABLE, heartbeat=0.2)
    for i in range(4):
        await js.publish(SUBJECT.format(i), str(i).encode(), stream=STREAM)
    task = asyncio.create_task(held.run(await js.pull_subscribe_bind(DURABLE, stream=STREAM)))
    try:
        for _ in range(200):
            if done == [b"3"] and len(held.in_hand) == 3:
                break
            await asyncio.sleep(0.01)
        assert done == [b"3"] and held.outstanding == 0
        await js.publish(SUBJECT.format(4), b"4", stream=STREAM)
        for _ in range(150):
            if len(done) == 2:
                break
            await asyncio.sleep(0.01)
        assert done == [b"3", b"4"]
    finally:
        gate.set()
        task.cancel()


async def test_the_installed_nats_py_has_what_the_held_pull_uses(js):  # type: ignore[no-untyped-def]
    # Else hold_pulls leaves the consumers to FastStream's fetch loop (and says so).
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            filter_subject="dooralert.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
        ),
    )
    assert _held_pull_works(await js.pull_subscribe_bind(DURABLE, stream=STREAM))
