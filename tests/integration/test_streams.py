"""Reading the log back: throwaway reads and the router's long-lived tail, on a real server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from services.eventlog import STREAM, StreamTail, TailReset, read_messages


async def put(js, n: int, start: int = 0) -> None:  # type: ignore[no-untyped-def]
    for i in range(start, start + n):
        await js.publish(f"dooralert.hamline.inc-{i}.encounter.reported", b"x", stream=STREAM)


async def test_a_tail_returns_each_message_once_in_order_and_only_its_subjects(js):
    await put(js, 3)
    await js.publish("dooralert.hamline.inc-0.notification.sent", b"y", stream=STREAM)
    tail = StreamTail(
        js, ["dooralert.*.*.encounter.reported"], since=datetime.now(UTC) - timedelta(minutes=5)
    )
    first = await tail.read_new()
    assert [m.subject.split(".")[2] for m in first] == ["inc-0", "inc-1", "inc-2"]
    assert await tail.read_new() == []
    await put(js, 2, start=3)
    assert [m.subject.split(".")[2] for m in await tail.read_new()] == ["inc-3", "inc-4"]
    await tail.close()


async def test_a_tail_whose_consumer_vanished_says_so_instead_of_missing_messages(js):
    await put(js, 2)
    tail = StreamTail(
        js, ["dooralert.*.*.encounter.reported"], since=datetime.now(UTC) - timedelta(minutes=5)
    )
    await tail.read_new()
    name = (await tail._psub.consumer_info()).name  # type: ignore[union-attr]
    await js.delete_consumer(STREAM, name)
    await put(js, 1, start=2)
    with pytest.raises(TailReset):
        await tail.read_new()
    fresh = StreamTail(
        js, ["dooralert.*.*.encounter.reported"], since=datetime.now(UTC) - timedelta(minutes=5)
    )
    assert len(await fresh.read_new()) == 3
    await fresh.close()


async def test_read_messages_honours_since_and_headers_only(js):
    await put(js, 2)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await read_messages(js, since=later) == []
    msgs = await read_messages(js, "dooralert.*.*.encounter.reported", headers_only=True)
    assert len(msgs) == 2 and all(m.data == b"" for m in msgs)


async def test_a_tail_of_several_subjects_returns_them_as_one_snapshot_in_stream_order(js):
    # One consumer per subject (faster to deliver on a big log), merged by stream sequence.
    subjects = ["dooralert.*.*.encounter.reported", "dooralert.district.*.pattern.detected"]
    await put(js, 1)
    await js.publish("dooralert.district.p-1.pattern.detected", b"p", stream=STREAM)
    await js.publish("dooralert.hamline.inc-0.notification.sent", b"y", stream=STREAM)
    await put(js, 1, start=1)
    tail = StreamTail(js, subjects, since=datetime.now(UTC) - timedelta(minutes=5))
    first = await tail.read_new()
    assert [m.subject.split(".")[2] for m in first] == ["inc-0", "p-1", "inc-1"]
    assert [m.seq for m in first] == sorted(m.seq for m in first)
    assert await tail.read_new() == []
    await js.publish("dooralert.district.p-2.pattern.detected", b"p", stream=STREAM)
    await put(js, 1, start=2)
    assert [m.subject.split(".")[2] for m in await tail.read_new()] == ["p-2", "inc-2"]
    # A message a consumer fetched past the call's cut waits for the next call.
    cursor = tail._cursors[0]
    await put(js, 1, start=3)
    await cursor.fetch_pending(10)
    assert cursor.take(cursor.held[0].seq - 1) == [] and len(cursor.held) == 1
    assert [m.subject.split(".")[2] for m in await tail.read_new()] == ["inc-3"]
    await tail.close()


async def test_a_tail_read_is_one_pull_per_subject_and_never_waits_on_a_quiet_log(js):
    await put(js, 7)
    tail = StreamTail(
        js, ["dooralert.*.*.encounter.reported"], since=datetime.now(UTC) - timedelta(minutes=5)
    )
    tail.batch = 3  # pages of 3, 3 and 1
    assert [m.subject.split(".")[2] for m in await tail.read_new()] == [
        f"inc-{i}" for i in range(7)
    ]
    psub = tail._psub
    assert psub is not None
    pulls = 0
    publish = psub._nc.publish

    async def counted(subject: str, *args, **kw):  # type: ignore[no-untyped-def]
        nonlocal pulls
        pulls += subject == psub._nms
        return await publish(subject, *args, **kw)

    async def no_info():  # type: ignore[no-untyped-def]
        raise AssertionError("consumer_info asked")

    psub._nc.publish = counted  # type: ignore[method-assign]
    psub.consumer_info = no_info  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        assert await tail.read_new() == []
        assert time.monotonic() - started < 1.0  # answered at once, not after an expiry
        await put(js, 2, start=7)
        assert [m.subject.split(".")[2] for m in await tail.read_new()] == ["inc-7", "inc-8"]
        assert pulls == 2
    finally:
        psub._nc.publish = publish  # type: ignore[method-assign]
    await tail.close()
