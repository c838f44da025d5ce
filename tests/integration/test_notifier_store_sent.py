"""The delivery record and the `notification.sent` event go out together in one flush
(Notifier._store_sent over send_together), on a real nats-server and aiosmtpd: both stored
before the ack, nothing left registered in the client, and a write that keeps failing raised
once the other has settled (the request then retried, never acked unrecorded)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.eventlog import DELIVERIES_BUCKET, STREAM, publish_event
from services.eventlog.jetstream import JetStreamEventLog
from services.notifier.main import build_notifier
from services.notifier.outcome import sent_event
from services.notifier.records import DeliveryRecord, JetStreamDeliveryRecords
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import WebhookServer, encounter, request, test_directory
from tests.support import SmtpServer, eventually


async def test_the_record_and_the_event_are_both_stored_and_nothing_stays_registered(
    settings: Settings, js: Any, smtp: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    reqs = [
        request("inc-store", c, role=r)
        for c, r in (("law-dept", "law"), ("chief", "leadership"), ("safety-office", "safety"))
    ]
    try:
        await publish_event(js, encounter("inc-store"))
        await asyncio.gather(*(publish_event(js, r) for r in reqs))
        await eventually(lambda: len(smtp.received) == len(reqs))

        async def all_stored() -> bool:
            for r in reqs:
                if await notifier.records.get(r.data.notification_id) is None:
                    return False
            sent = await notifier.event_log.read_incident("inc-store")
            return sum(e.type == "notification.sent" for e in sent) == len(reqs)

        await eventually(all_stored)
        assert isinstance(notifier.event_log, JetStreamEventLog)
        nc = notifier.event_log.js._nc
        assert not [k for k in nc._resp_map if k.startswith("p")]  # no answer left waiting
    finally:
        await broker.stop()
        await notifier.close()


async def test_a_record_that_cannot_be_stored_is_raised_after_the_event_settles(
    settings: Settings, js: Any, tmp_path: Path
) -> None:
    fast = settings.model_copy(
        update={"publish_retry_seconds": 0.5, "publish_timeout_seconds": 0.5}
    )
    broker, notifier = build_notifier(fast, directory=test_directory(tmp_path, "http://x"))
    await broker.connect()
    try:
        records = notifier.records
        assert isinstance(records, JetStreamDeliveryRecords)
        await records._bucket()  # bound, then the bucket goes away: its puts find no stream
        await js.delete_key_value(DELIVERIES_BUCKET)
        req = request("inc-gone", "chief", role="leadership")
        event = sent_event(req, attempt=1, reply="250 OK", now=datetime.now(UTC))
        with pytest.raises(Exception):  # noqa: B017 - what the retry finally raised
            await notifier._store_sent(req.data.notification_id, DeliveryRecord(1, "250 OK"), event)
        # The event was stored all the same (its write settled before the failure was raised).
        info = await js.stream_info(STREAM)
        assert info.state.messages >= 1
        stored = await notifier.event_log.read_incident("inc-gone")
        assert [e.type for e in stored] == ["notification.sent"]
    finally:
        await broker.stop()
