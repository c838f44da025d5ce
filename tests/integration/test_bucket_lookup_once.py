"""The delivery-records bucket looked up once (d26fdca, records.JetStreamDeliveryRecords
`_bucket` under a lock), when the lookup in flight fails while others wait for it: that caller
gets the failure, each waiter then looks again itself (none fails with another's error, none
waits for ever), and the first that succeeds serves the rest; a caller cancelled while it
waits gives the lock up."""

from __future__ import annotations

import asyncio

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from services.eventlog import DELIVERIES_BUCKET
from services.notifier import records as records_module
from services.notifier.records import JetStreamDeliveryRecords


async def test_waiters_look_again_when_the_lookup_in_flight_fails(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    release = asyncio.Event()
    real = records_module.consistent_key_value

    async def slow_then_fail(js: JetStreamContext, bucket: str) -> object:
        lookups.append(bucket)
        if len(lookups) == 1:
            await release.wait()
            raise NatsTimeoutError
        return await real(js, bucket)

    monkeypatch.setattr(records_module, "consistent_key_value", slow_then_fail)
    records = JetStreamDeliveryRecords(js, retry_for=0.0)
    first = asyncio.ensure_future(records.get("n-first"))
    await asyncio.sleep(0.05)
    cancelled = asyncio.ensure_future(records.get("n-cancelled"))
    waiters = [asyncio.ensure_future(records.get(f"n-{i}")) for i in range(8)]
    await asyncio.sleep(0.05)
    cancelled.cancel()
    release.set()
    with pytest.raises(NatsTimeoutError):
        await first
    assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [None] * 8
    assert cancelled.cancelled()
    assert lookups == [DELIVERIES_BUCKET, DELIVERIES_BUCKET]
