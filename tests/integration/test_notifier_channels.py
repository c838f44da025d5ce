"""Notifier delivery on a real nats-server, a real aiosmtpd and a local signed-webhook server:
retries, channel fallback, unreachable contacts, concurrency and dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from schemas.events import Event
from services.eventlog import STREAM, publish_event, read_incident, read_messages
from services.notifier.main import build_notifier
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import (
    WebhookServer,
    encounter,
    request,
    test_directory,
)
from tests.support import TEST_SECRET, ScriptedHandler, SmtpServer, eventually


@pytest.fixture
async def notifier(
    settings: Settings, js: Any, webhook: WebhookServer, tmp_path: Path
) -> AsyncIterator[Any]:
    directory = test_directory(tmp_path, webhook.base)
    broker, service = build_notifier(settings, directory=directory)
    await broker.start()
    try:
        yield service
    finally:
        await broker.stop()
        await service.close()


async def start(js: Any, incident: str, *requests: Any, **report: Any) -> None:
    await publish_event(js, encounter(incident, **report))
    for req in requests:
        await publish_event(js, req)


async def events_of(js: Any, incident: str, kind: str) -> list[Event]:
    return [e for e in await read_incident(js, incident) if e.type == kind]


def to(smtp: SmtpServer, address: str) -> list[Any]:
    return [m for m in smtp.received if address in m.rcpt]


async def test_421_then_451_then_success_sends_exactly_one_email(notifier, js, smtp):
    smtp.handler.replies = ["421 4.7.0 busy", "451 4.3.0 try again later"]
    req = request("inc-retry", "chief", role="leadership")
    await start(js, "inc-retry", req)
    await eventually(lambda: events_of(js, "inc-retry", "notification.sent"))
    failed = await events_of(js, "inc-retry", "notification.failed")
    assert [f.data.permanent for f in failed] == [False, False]  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    assert len(to(smtp, "chief@district.example")) == 1


async def test_550_falls_back_to_the_contacts_signed_webhook(notifier, js, smtp, webhook):
    smtp.handler.reply_for = lambda rcpts: (
        "550 5.1.1 mailbox unavailable" if "law@district.example" in rcpts else None
    )
    req = request("inc-fallback", "law-dept")
    await start(js, "inc-fallback", req)
    await eventually(lambda: webhook.ok("/law"))
    sent = await eventually(lambda: events_of(js, "inc-fallback", "notification.sent"))
    requested = await events_of(js, "inc-fallback", "notification.requested")
    failed = await events_of(js, "inc-fallback", "notification.failed")

    assert len(failed) == 1 and failed[0].data.permanent  # type: ignore[attr-defined]
    assert failed[0].data.contact_unreachable is False  # type: ignore[attr-defined]
    fallback = next(r for r in requested if r.data.fallback_of)  # type: ignore[attr-defined]
    assert fallback.data.fallback_of == req.data.notification_id  # type: ignore[attr-defined]
    assert fallback.data.channel == "webhook" and fallback.data.contact_id == "law-dept"  # type: ignore[attr-defined]
    assert sent[0].data.notification_id == fallback.data.notification_id  # type: ignore[attr-defined]
    assert sent[0].data.channel == "webhook"  # type: ignore[attr-defined]

    body = webhook.ok("/law")[0].json
    assert body["incident_id"] == "inc-fallback" and body["severity"] == "high"
    assert body["school"] == {"id": "hamline", "name": "Hamline Elementary"}
    assert "/incidents/inc-fallback?token=" in body["status_url"]
    assert "@" not in webhook.ok("/law")[0].body.decode()  # no contact details
    assert not to(smtp, "law@district.example")


async def test_contact_unreachable_when_every_channel_fails(notifier, js, smtp, webhook):
    smtp.handler.reply_for = lambda rcpts: (
        "550 5.1.1 no such user" if "safety@district.example" in rcpts else None
    )
    webhook.status["/safety"] = [404]
    await start(js, "inc-unreach", request("inc-unreach", "safety-office", role="safety"))

    async def two_failures():
        failed = await events_of(js, "inc-unreach", "notification.failed")
        return failed if len(failed) == 2 else None

    failed = await eventually(two_failures)
    by_channel = {f.data.channel: f.data for f in failed}  # type: ignore[attr-defined]
    assert by_channel["email"].contact_unreachable is False
    assert by_channel["webhook"].contact_unreachable is True
    assert by_channel["webhook"].reason.startswith("HTTP 404")
    await asyncio.sleep(0.3)
    assert len(await events_of(js, "inc-unreach", "notification.requested")) == 2


async def test_webhook_5xx_is_retried_then_delivered_once(notifier, js, webhook):
    webhook.status["/hook-only"] = [503, 200]
    await start(js, "inc-hook", request("inc-hook", "hook-only", role="safety", channel="webhook"))
    await eventually(lambda: events_of(js, "inc-hook", "notification.sent"))
    failed = await events_of(js, "inc-hook", "notification.failed")
    assert len(failed) == 1 and not failed[0].data.permanent  # type: ignore[attr-defined]
    assert len(webhook.ok("/hook-only")) == 2  # the 503, then the 200
    assert all(h.verified for h in webhook.hits)


async def test_webhook_with_wrong_secret_is_refused_and_unreachable(notifier, js, webhook):
    webhook.secret = "not-the-notifiers-secret"
    await start(
        js, "inc-badsig", request("inc-badsig", "hook-only", role="safety", channel="webhook")
    )
    failed = await eventually(lambda: events_of(js, "inc-badsig", "notification.failed"))
    assert failed[0].data.reason.startswith("HTTP 401")  # type: ignore[attr-defined]
    assert failed[0].data.contact_unreachable is True  # type: ignore[attr-defined]
    assert webhook.hits and not any(h.verified for h in webhook.hits)


async def test_a_burst_to_one_server_reuses_smtp_sessions(notifier, js, smtp):
    reqs = [request(f"inc-burst-{i}", "chief", role="leadership") for i in range(30)]
    for i, req in enumerate(reqs):
        await publish_event(js, encounter(f"inc-burst-{i}"))
        await publish_event(js, req)
    await eventually(lambda: len(to(smtp, "chief@district.example")) == 30)
    assert notifier.smtp.connects <= notifier.smtp.size


class SlowHandler(ScriptedHandler):
    """Holds the DATA reply for one mailbox, as a stalled receiving server would."""

    def __init__(self, slow: str, seconds: float) -> None:
        super().__init__()
        self.slow, self.seconds = slow, seconds

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.slow in envelope.rcpt_tos:
            await asyncio.sleep(self.seconds)
        return await super().handle_DATA(server, session, envelope)


async def test_a_hanging_recipient_does_not_delay_the_others(js, nats_server, webhook, tmp_path):
    slow_smtp = SmtpServer()
    slow_smtp.handler = SlowHandler("slow@district.example", 5.0)
    slow_smtp.start()
    settings = Settings(
        nats_url=nats_server.url,
        smtp_host="127.0.0.1",
        smtp_port=slow_smtp.port,
        secret_key=TEST_SECRET,
        smtp_timeout=20.0,  # type: ignore[arg-type]
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        max_attempts=4,
    )
    broker, service = build_notifier(settings, directory=test_directory(tmp_path, webhook.base))
    await broker.start()
    try:
        await start(js, "inc-slow", request("inc-slow", "slow-contact", role="safety"))
        await asyncio.sleep(0.3)  # the slow send is in progress
        t0 = time.monotonic()
        others = [("chief", "leadership"), ("principal-hamline", "principal"), ("law-dept", "law")]
        for cid, role in others:
            await publish_event(js, request("inc-slow", cid, role=role))
        await eventually(lambda: len(slow_smtp.received) == 3, timeout=6)
        elapsed = time.monotonic() - t0
        assert not [m for m in slow_smtp.received if "slow@district.example" in m.rcpt]
        assert elapsed < 3.0, f"others waited {elapsed:.1f}s behind the hanging recipient"
        print(f"\nthree alerts delivered in {elapsed:.2f}s while one recipient hung")
    finally:
        await broker.stop()
        await service.close()
        slow_smtp.stop()


async def test_max_deliveries_advisory_becomes_a_dead_letter_event(notifier, js):
    # A consumer with max_deliver=2 that never acks: the server gives up and advises.
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name="flaky",
            filter_subject="dooralert.*.inc-dead.encounter.reported",
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=2,
            ack_wait=0.3,
        ),
    )
    await publish_event(js, encounter("inc-dead"))
    psub = await js.pull_subscribe_bind("flaky", stream=STREAM)
    deliveries = 0
    for _ in range(4):
        try:
            msgs = await psub.fetch(1, timeout=0.5)
        except TimeoutError:
            continue  # nothing left: the delivery limit is reached
        deliveries += 1
        await msgs[0].nak()
    assert deliveries == 2

    async def dead():
        msgs = await read_messages(js, "dooralert.*.*.message.dead_lettered")
        return msgs or None

    msgs = await eventually(dead, timeout=5)
    event = msgs[0].event()
    assert event.data.consumer == "flaky"  # type: ignore[attr-defined]
    assert event.data.subject == "dooralert.hamline.inc-dead.encounter.reported"  # type: ignore[attr-defined]
    assert event.incident_id == "inc-dead" and "max deliveries" in event.data.reason  # type: ignore[attr-defined]


async def test_apprise_target_gets_the_plain_text_alert(notifier, js, webhook):
    req = request("inc-apprise", "chat-room", role="leadership", channel="apprise")
    await start(js, "inc-apprise", req)
    [sent] = await eventually(lambda: events_of(js, "inc-apprise", "notification.sent"))
    assert sent.data.channel == "apprise"  # type: ignore[attr-defined]
    [hit] = webhook.ok("/apprise")
    assert "Hamline Elementary" in hit.json["title"]
    assert "Administrative warrant" in hit.json["message"]
    # A shared room: no acknowledgement link, no staff notes.
    assert "/ack/" not in hit.json["message"]
    assert "Notes from staff" not in hit.json["message"]


async def test_failing_apprise_target_is_retried_then_falls_back_to_email(
    notifier, js, webhook, smtp
):
    webhook.status["/apprise"] = [500]
    req = request("inc-apprise-down", "chat-room", role="leadership", channel="apprise")
    await start(js, "inc-apprise-down", req)
    await eventually(lambda: to(smtp, "chat-fallback@district.example"), timeout=15)
    failed = await events_of(js, "inc-apprise-down", "notification.failed")
    assert [f.data.permanent for f in failed][-1] is True  # type: ignore[attr-defined]
    assert "token" not in str(failed) and "json://" not in str(failed)
