"""`JetStreamEventLog.append` through `send_together` (83ac8ce) keeps `publish_event`'s
contract on a real nats-server: the same Appended (seq, and `duplicate` for an event id
already stored), the same exception once the retries run out (what intake answers 503 for),
and a caller that gives up (an HTTP client gone) stops the retries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from services.eventlog.contract import STREAM
from services.eventlog.interface import Appended
from services.eventlog.jetstream import JetStreamEventLog, publish_event
from services.intake.errors import LOG_FAILURES
from tests.service.test_router_handler import encounter


async def test_an_event_appended_again_is_a_duplicate_of_the_first(js: JetStreamContext) -> None:
    log = JetStreamEventLog(js, publish_timeout=2.0, retry_for=1.0)
    event = encounter("inc-append")
    assert await log.append(event) == Appended(seq=1, duplicate=False)
    assert await log.append(event) == Appended(seq=1, duplicate=True)
    assert not js._nc._resp_map  # type: ignore[attr-defined]  # every reply handled


async def test_with_the_stream_gone_append_raises_what_publish_event_raises(
    js: JetStreamContext,
) -> None:
    await js.delete_stream(STREAM)
    event = encounter("inc-gone")
    with pytest.raises(NoStreamResponseError):
        await publish_event(js, event, timeout=0.5, retry_for=0.5)
    log = JetStreamEventLog(js, publish_timeout=0.5, retry_for=0.5)
    started = time.monotonic()
    with pytest.raises(NoStreamResponseError) as raised:
        await log.append(event)
    assert isinstance(raised.value, LOG_FAILURES)  # intake: 503, nothing recorded
    assert time.monotonic() - started < 0.5 + 1.5  # retry_for, not a fresh one per attempt


async def test_an_append_given_up_on_stops_its_retries(js: JetStreamContext) -> None:
    await js.delete_stream(STREAM)
    nc: Any = js._nc  # type: ignore[attr-defined]
    log = JetStreamEventLog(js, publish_timeout=0.5, retry_for=30.0)
    appending = asyncio.ensure_future(log.append(encounter("inc-cancelled")))
    await asyncio.sleep(0.5)  # retrying: no responders for the stream's subjects
    appending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await appending
    await asyncio.sleep(0.3)
    sent = nc.stats["out_msgs"]
    await asyncio.sleep(1.0)  # a retry left running would publish again within its backoff
    assert nc.stats["out_msgs"] == sent
