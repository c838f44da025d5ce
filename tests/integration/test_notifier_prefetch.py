"""The delivery record reads of a fetched batch start together (handler.prefetch), on a real
nats-server and aiosmtpd: each email is checked against its own record, read once; a read that
waited too long, or was started for another notification, is not used; the ack that waits for
the connection's next write (handler.LazyAcks) is written by its timer when none comes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from schemas.events import NotificationRequested
from services.eventlog import STREAM, publish_event
from services.notifier import handler as handler_module
from services.notifier.main import build_notifier
from services.notifier.records import DeliveryRecord
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import WebhookServer, encounter, request, test_directory
from tests.support import SmtpServer, eventually


async def test_a_batch_reads_each_record_once_all_started_at_fetch(
    settings: Settings,
    js: Any,
    smtp: SmtpServer,
    webhook: WebhookServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used: list[bool] = []
    prefetched = handler_module._prefetched

    def spy(raw: Msg, notification_id: str) -> Any:
        read = prefetched(raw, notification_id)
        used.append(read is not None)
        return read

    monkeypatch.setattr(handler_module, "_prefetched", spy)
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    reads: list[str] = []
    await broker.start()
    try:
        records = notifier.records
        get = records.get

        async def counted(notification_id: str) -> DeliveryRecord | None:
            reads.append(notification_id)
            return await get(notification_id)

        monkeypatch.setattr(records, "get", counted)
        contacts = [("law-dept", "law"), ("chief", "leadership"), ("safety-office", "safety")]
        reqs = [request("inc-batch", c, role=r) for c, r in contacts]
        await publish_event(js, encounter("inc-batch"))
        await asyncio.gather(*(publish_event(js, r) for r in reqs))
        await eventually(lambda: len(smtp.received) == len(reqs))
        await eventually(lambda: len(used) == len(reqs))
    finally:
        await broker.stop()
        await notifier.close()
    assert sorted(reads) == sorted(r.data.notification_id for r in reqs)  # one read each
    assert all(used)


class Raw:
    """A fetched message as far as prefetch looks at it."""

    def __init__(self, data: bytes, delivered: int = 1) -> None:
        self.data = data
        self.metadata = Msg.Metadata(
            sequence=Msg.Metadata.SequencePair(consumer=1, stream=1),
            num_pending=0,
            num_delivered=delivered,
            timestamp=datetime.now(UTC),
            stream="DOORALERT",
            consumer="notifier",
        )


def fetched(req: NotificationRequested, data: bytes | None = None, delivered: int = 1) -> Msg:
    body = data if data is not None else req.model_dump_json().encode()
    return cast("Msg", Raw(body, delivered))


class Records:
    def __init__(self) -> None:
        self.reads = 0

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        self.reads += 1
        return DeliveryRecord(1, "250 OK")

    async def put(self, notification_id: str, record: DeliveryRecord) -> None:
        raise AssertionError("not here")


async def test_a_stale_or_foreign_prefetch_is_not_used(
    settings: Settings, webhook: WebhookServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = Records()
    _, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    notifier._records = records
    req = request("inc-stale", "chief", role="leadership")
    nid = req.data.notification_id

    fresh = fetched(req)
    notifier.prefetch(fresh)
    read = handler_module._prefetched(fresh, nid)
    assert read is not None and await read == DeliveryRecord(1, "250 OK")
    assert handler_module._prefetched(fresh, nid) is None  # taken once

    foreign = fetched(req)
    notifier.prefetch(foreign)
    assert handler_module._prefetched(foreign, "another-notification") is None

    stale = fetched(req)
    notifier.prefetch(stale)
    monkeypatch.setattr(time, "monotonic", lambda: 1e12)
    assert handler_module._prefetched(stale, nid) is None

    redelivered = fetched(req, delivered=2)  # checked when its handler starts
    notifier.prefetch(redelivered)
    assert handler_module._prefetched(redelivered, nid) is None

    garbage = fetched(req, b"not json")
    notifier.prefetch(garbage)
    assert not hasattr(garbage, handler_module._PREFETCHED)
    await asyncio.sleep(0)
    assert records.reads == 1  # the foreign and the stale reads were cancelled unread


async def test_a_lone_email_is_acked_without_another_write(
    settings: Settings, js: Any, smtp: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    # The ack waits for the connection's next write (handler.LazyAcks); with none coming, its
    # timer writes it: nothing stays pending to be redelivered.
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    try:
        await publish_event(js, encounter("inc-lone"))
        await publish_event(js, request("inc-lone", "chief", role="leadership"))
        await eventually(lambda: len(smtp.received) == 1)

        async def acked() -> bool:
            info = await js.consumer_info(STREAM, "notifier")
            return bool(info.num_ack_pending == 0 and info.num_pending == 0)

        await eventually(acked, timeout=2)
        info = await js.consumer_info(STREAM, "notifier")
        assert info.num_redelivered == 0
    finally:
        await broker.stop()
        await notifier.close()


def test_prefetch_never_raises_on_a_body_it_cannot_read() -> None:
    # It runs inside FastStream's fetch loop: an exception there would stop all fetching.
    from types import SimpleNamespace

    from services.notifier.handler import _PREFETCHED, Notifier

    notifier = Notifier.__new__(Notifier)
    deep = b"[" * 100_000 + b"]" * 100_000
    odd_id = b'{"data": {"notification_id":"\xff\xfe"}}'  # found, but not UTF-8
    escaped = b'{"data": {"notification_id":"a\\"b"}}'  # an escape: not read by the finder
    for body in (deep, b"\xff", b"{}", b'{"data": 1}', b"null", odd_id, escaped):
        raw = SimpleNamespace(data=body, metadata=SimpleNamespace(num_delivered=1))
        notifier.prefetch(raw)  # type: ignore[arg-type]
        assert not hasattr(raw, _PREFETCHED)  # nothing started: the handler refuses it
