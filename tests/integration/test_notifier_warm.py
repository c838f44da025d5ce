"""The notifier reads a report, and its notes key, as intake publishes it, while the router
decides (NotifierBroker, Notifier.warm), on a real nats-server and aiosmtpd: its alerts then
read neither again, still carry the notes, and a busy notifier leaves the reads to them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.domain.sealing import encode_key, new_key, seal
from services.eventlog import publish_event
from services.eventlog.notekeys import JetStreamNoteKeys
from services.notifier.main import build_notifier
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import WebhookServer, encounter, request, test_directory
from tests.support import SmtpServer, eventually

NOTES = "Two agents asked for the office; kept outside."
CONTACTS = [("law-dept", "law"), ("chief", "leadership"), ("safety-office", "safety")]


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    server = WebhookServer()
    await server.start()
    yield server
    await server.stop()


async def sealed_report(js: Any, incident: str) -> None:
    keys = await JetStreamNoteKeys.open(js)
    key = new_key(incident, now=datetime.now(UTC))
    await keys.create_if_absent(incident, encode_key(key))
    reported = encounter(incident)
    sealed = seal(NOTES, key, incident_id=incident, event_id=reported.id, field="notes")
    data = reported.data.model_copy(update={"notes_sealed": sealed})
    await publish_event(js, reported.model_copy(update={"data": data}))


async def test_a_published_report_is_read_ahead_and_its_alerts_read_it_no_more(
    settings: Settings, js: Any, smtp: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    try:
        await sealed_report(js, "inc-warm")
        # Read ahead: the report is remembered before any request for it exists.
        await eventually(lambda: notifier.reports.get("hamline", "inc-warm") is not None)
        assert notifier._report_reads.reads == 1
        await asyncio.gather(
            *(publish_event(js, request("inc-warm", c, role=r)) for c, r in CONTACTS)
        )
        await eventually(lambda: len(smtp.received) == len(CONTACTS))
    finally:
        await broker.stop()
        await notifier.close()
    assert notifier._report_reads.reads == 1  # the alerts read it no more
    assert all(NOTES in str(m) for m in smtp.received)  # and still carry the notes


async def test_a_busy_notifier_leaves_the_reads_to_the_requests(
    settings: Settings, js: Any, smtp: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    try:
        assert broker.held is not None
        busy: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        broker.held.in_hand.add(busy)  # type: ignore[arg-type]  # as if a request were in hand
        await sealed_report(js, "inc-busy")
        await asyncio.sleep(0.3)
        assert notifier.reports.get("hamline", "inc-busy") is None
        assert notifier._report_reads.reads == 0
        broker.held.in_hand.discard(busy)  # type: ignore[arg-type]
        await publish_event(js, request("inc-busy", "law-dept", role="law"))
        await eventually(lambda: len(smtp.received) == 1)
    finally:
        await broker.stop()
        await notifier.close()
    assert NOTES in str(smtp.received[0])
