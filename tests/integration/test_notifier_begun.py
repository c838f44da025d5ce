"""The notifier begins an email's transaction while it reads (handler.handle, smtp.Begun), on
a real nats-server and aiosmtpd: MAIL, RCPT and DATA reach the server before the delivery
record read completes, so only the body is left once the email is made; and a request whose
record already exists (delivered before a crash, then redelivered) sends nothing, though its
DATA had been sent: the transaction is ended and the server discards it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from services.eventlog import STREAM, publish_event
from services.notifier.main import build_notifier
from services.notifier.records import DeliveryRecord
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import WebhookServer, encounter, request, test_directory
from tests.support import ScriptedHandler, SmtpServer, eventually

LAW = "law@district.example"


class Seen(ScriptedHandler):
    """Accepts mail, and tells each DATA command as the server reads it (before its 354)."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []  # "DATA <recipients>" here, "read" by the test's reads
        self.on_data: Callable[[list[str]], None] = lambda rcpts: None


class _Smtp(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        if isinstance(handler, Seen) and self.envelope is not None:
            rcpts = list(self.envelope.rcpt_tos)
            handler.order.append("DATA " + ",".join(rcpts))
            handler.on_data(rcpts)
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def seen() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = Seen()
    server.controller = _Controller(server.handler, hostname="127.0.0.1", port=server.port)
    server.controller.start()
    yield server
    server.stop()


def slow_record_read(notifier: Any, notification_id: str, server: SmtpServer) -> None:
    """The record read of `notification_id` completes only once the server has read the
    DATA of an email to LAW (or after 5 s, when nothing begins it)."""
    handler = server.handler
    assert isinstance(handler, Seen)
    loop = asyncio.get_running_loop()
    data_seen = asyncio.Event()

    def on_data(rcpts: list[str]) -> None:  # in the server's thread
        if LAW in rcpts:
            loop.call_soon_threadsafe(data_seen.set)

    handler.on_data = on_data
    records = notifier.records
    get = records.get

    async def slow(nid: str) -> DeliveryRecord | None:
        if nid != notification_id:
            return await get(nid)
        try:
            await asyncio.wait_for(data_seen.wait(), 5)
        except TimeoutError:
            pass
        record = await get(nid)
        handler.order.append("read")
        return record

    records.get = slow


async def warmed(js: Any, notifier: Any, server: SmtpServer, incident: str) -> None:
    """The incident's report stored and one email sent: the pool holds an idle session."""
    await publish_event(js, encounter(incident))
    await publish_event(js, request(incident, "chief", role="leadership"))
    await eventually(lambda: len(server.received) == 1)
    await eventually(lambda: len(notifier.smtp._idle) == 1)


async def handled(js: Any) -> bool:
    info = await js.consumer_info(STREAM, "notifier")
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def test_data_reaches_the_server_while_the_record_is_read(
    settings: Settings, js: Any, seen: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"smtp_port": seen.port})
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    handler = seen.handler
    assert isinstance(handler, Seen)
    try:
        await warmed(js, notifier, seen, "inc-begun")
        req = request("inc-begun", "law-dept", role="law")
        slow_record_read(notifier, req.data.notification_id, seen)
        await publish_event(js, req)
        await eventually(lambda: len(seen.received) == 2)
        await eventually(lambda: handled(js))
        assert await notifier.records.get(req.data.notification_id) is not None
    finally:
        await broker.stop()
        await notifier.close()
    # The server read the email's DATA before its record read completed; the email went
    # once, on the pooled session.
    assert handler.order.count(f"DATA {LAW}") == 1
    assert handler.order.index(f"DATA {LAW}") < handler.order.index("read")
    assert [r.rcpt for r in seen.received] == [["chief@district.example"], [LAW]]
    # The begun session carried it (another envelope would have closed it for a new one).
    assert notifier.smtp.connects == 1
    assert notifier.smtp._slots._value == notifier.smtp.size


async def test_a_request_already_delivered_sends_nothing_though_it_was_begun(
    settings: Settings, js: Any, seen: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"smtp_port": seen.port})
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    handler = seen.handler
    assert isinstance(handler, Seen)
    try:
        await warmed(js, notifier, seen, "inc-again")
        req = request("inc-again", "law-dept", role="law")
        nid = req.data.notification_id
        # Sent and recorded before a crash that lost the ack: the request comes again.
        await notifier.records.put(nid, DeliveryRecord(1, "250 OK queued as before"))
        slow_record_read(notifier, nid, seen)
        await publish_event(js, req)
        await eventually(lambda: handled(js))

        async def logged_sent() -> bool:
            events = await notifier.event_log.read_incident("inc-again")
            return any(
                e.type == "notification.sent" and e.data.notification_id == nid for e in events
            )

        await eventually(logged_sent)
        assert notifier.smtp._slots._value == notifier.smtp.size  # the begun slot given back
        # Another email after it goes out: the server has had every chance to take one.
        await publish_event(js, request("inc-again", "safety-office", role="safety"))
        await eventually(lambda: len(seen.received) == 2)
    finally:
        await broker.stop()
        await notifier.close()
    assert f"DATA {LAW}" in handler.order  # begun: MAIL, RCPT and DATA were sent ...
    assert handler.order.index(f"DATA {LAW}") < handler.order.index("read")
    # ... and no email to LAW reached the server: the transaction was ended, not sent.
    assert [r.rcpt for r in seen.received] == [
        ["chief@district.example"],
        ["safety@district.example"],
    ]


async def test_an_attempt_that_fails_before_the_send_ends_its_transaction(
    settings: Settings, js: Any, seen: SmtpServer, webhook: WebhookServer, tmp_path: Path
) -> None:
    # The request outruns its incident's report: the plan fails (retried later) after the
    # transaction was begun; it is ended, its slot given back, and the retry sends the email.
    settings = settings.model_copy(
        update={"smtp_port": seen.port, "retry_base_seconds": 0.3, "max_attempts": 10}
    )
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    handler = seen.handler
    assert isinstance(handler, Seen)
    try:
        await warmed(js, notifier, seen, "inc-warm")
        req = request("inc-early", "law-dept", role="law")
        nid = req.data.notification_id
        slow_record_read(notifier, nid, seen)
        await publish_event(js, req)

        async def retried() -> bool:
            events = await notifier.event_log.read_incident("inc-early")
            return any(
                e.type == "notification.failed" and e.data.notification_id == nid for e in events
            )

        await eventually(retried)
        assert f"DATA {LAW}" in handler.order  # it had been begun
        assert len(seen.received) == 1
        assert notifier.smtp._slots._value == notifier.smtp.size
        await publish_event(js, encounter("inc-early"))
        await eventually(lambda: len(seen.received) == 2)
        await eventually(lambda: handled(js))
    finally:
        await broker.stop()
        await notifier.close()
    assert [r.rcpt for r in seen.received] == [["chief@district.example"], [LAW]]
    assert notifier.smtp._slots._value == notifier.smtp.size
