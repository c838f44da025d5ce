"""The notifier's handler: each request becomes one email and a recorded outcome.

The handler reads and writes JetStream through `broker.connection.jetstream()`, which
`TestNatsBroker` only mocks, so it runs here against a fake JetStream implementing the slice
of the real interface the notifier uses (publish with the server's duplicate window,
get_last_msg, key_value), and a real SMTP server (aiosmtpd, the `smtp` fixture) that can be
told to answer 451 or 550.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from nats.js.api import PubAck

from schemas.events import (
    EncounterReported,
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    serialize_event,
    subject_for,
)
from services.domain.directory import Directory, load_directory
from services.domain.tokens import check_view_token
from services.eventlog import DELIVERIES_BUCKET
from services.eventlog.consumer import run_handler
from services.eventlog.jetstream import JetStreamEventLog
from services.intake.reports import encounter_event, parse_report
from services.notifier.main import Notifier, backoff, build_broker
from services.router.decide import decide
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.support import EXAMPLES, SmtpServer, report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)

# --- fakes (the same as the router's; each service test file stands alone) ------------------
from tests.service.fakes import (
    FakeBroker,
    FakeClient,
    FakeJetStream,
    FakeKeyValue,
    FakeMessage,
    ack_subject,
)

# --- helpers --------------------------------------------------------------------------------

DIRECTORY = load_directory(EXAMPLES)
MAX_ATTEMPTS = 3


@pytest.fixture
def settings(smtp: SmtpServer) -> Settings:
    """Replaces the shared `settings` fixture here: no nats-server is needed for these tests."""
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_timeout=5.0,
        secret_key="test-secret",  # type: ignore[arg-type]
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        max_attempts=MAX_ATTEMPTS,
        publish_timeout_seconds=0.05,
        publish_retry_seconds=0.3,
        public_url="https://dooralert.example",
    )


def incident(**overrides: Any) -> tuple[EncounterReported, list[NotificationRequested]]:
    r = parse_report(report(**overrides), now=NOW)
    reported = encounter_event(r, incident_id="inc-1", actor="key-hamline", now=NOW)
    out = decide(reported, rules=load_rules(EXAMPLES), directory=DIRECTORY, now=NOW)
    return reported, [e for e in out if isinstance(e, NotificationRequested)]


def log_with_report(**overrides: Any) -> tuple[FakeJetStream, list[NotificationRequested]]:
    """A JetStream holding the incident's report, as the notifier finds it in production."""
    js = FakeJetStream()
    js.buckets[DELIVERIES_BUCKET] = FakeKeyValue()
    reported, requests = incident(**overrides)
    js.stored.append((subject_for(reported), serialize_event(reported)))
    return js, requests


def new_events(js: FakeJetStream) -> list[Event]:
    return [e for e in js.events() if not isinstance(e, EncounterReported)]


async def deliver(
    js: FakeJetStream,
    settings: Settings,
    req: NotificationRequested,
    *,
    delivered: int = 1,
    directory: Directory = DIRECTORY,
) -> FakeMessage:
    notifier = Notifier(settings=settings, directory=directory, broker=FakeBroker(js))  # type: ignore[arg-type]
    msg = FakeMessage(
        serialize_event(req), subject_for(req), consumer="notifier", delivered=delivered
    )
    try:
        await run_handler(
            msg,
            event_log=JetStreamEventLog(js, retry_for=settings.publish_retry_seconds),  # type: ignore[arg-type]
            consumer="notifier",
            expect=NotificationRequested,
            handle=notifier.handle,
        )
    finally:
        close = getattr(notifier, "close", None)  # pooled SMTP sessions, HTTP client
        if close is not None:
            await close()
    return msg


def principal(requests: list[NotificationRequested]) -> NotificationRequested:
    return next(r for r in requests if r.data.role == "principal")


# --- delivery -------------------------------------------------------------------------------


async def test_a_request_sends_one_email_records_it_and_acks(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    req = principal(requests)
    msg = await deliver(js, settings, req)
    assert msg.outcome == "ack"
    [mail] = smtp.received
    assert mail.rcpt == ["principal@hamline.district.example"]
    assert mail.message["Message-ID"] == f"<{req.data.notification_id}@dooralert>"
    assert "Hamline Elementary" in mail.message["Subject"]
    [sent] = new_events(js)
    assert isinstance(sent, NotificationSent)
    assert (sent.data.notification_id, sent.data.attempt) == (req.data.notification_id, 1)
    assert sent.causation_id == req.id
    assert sent.data.reply == "OK queued"  # the server's words, as it gave them
    record = json.loads(js.buckets[DELIVERIES_BUCKET].data[req.data.notification_id])
    assert record["attempt"] == 1


async def test_the_email_links_to_the_status_page_with_a_token_for_this_incident(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    await deliver(js, settings, requests[0])
    text = smtp.received[0].message.get_payload()[0].get_payload(decode=True).decode()
    line = next(x for x in text.splitlines() if "https://dooralert.example/incidents/inc-1" in x)
    token = line.split("token=")[1].strip()
    assert check_view_token("test-secret", "inc-1", token)


async def test_recorded_outcomes_never_contain_an_address(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.handler.replies = ["550 5.1.1 <law-oncall@district.example>: Recipient address rejected"]
    for req in requests:
        await deliver(js, settings, req)
    assert len(new_events(js)) == len(requests)
    assert all(b"@" not in data for _, data in js.stored[1:])


async def test_a_notification_already_in_the_bucket_sends_no_email_and_republishes_sent(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    req = requests[0]
    js.buckets[DELIVERIES_BUCKET].data[req.data.notification_id] = json.dumps(
        {"attempt": 2, "reply": "250 OK queued", "at": NOW.isoformat()}
    ).encode()
    msg = await deliver(js, settings, req, delivered=3)
    assert msg.outcome == "ack"
    assert smtp.received == []
    [sent] = new_events(js)
    assert isinstance(sent, NotificationSent)
    assert (sent.data.attempt, sent.data.reply) == (2, "250 OK queued")


async def test_a_redelivered_request_sends_no_second_email(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    await deliver(js, settings, requests[0], delivered=1)
    again = await deliver(js, settings, requests[0], delivered=2)
    assert again.outcome == "ack"
    assert len(smtp.received) == 1
    assert len(new_events(js)) == 1  # the republished `sent` has the same id: a duplicate


async def test_a_451_reply_is_a_transient_failure_retried_after_a_backoff(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.handler.replies = ["451 4.3.0 Please try again later"]
    msg = await deliver(js, settings, requests[0], delivered=1)
    assert msg.outcome == "nack"
    assert msg.delay is not None and 0 < msg.delay <= settings.retry_max_seconds
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed)
    assert failed.data.permanent is False
    assert failed.data.attempt == 1
    assert failed.data.reason.startswith("451")
    assert failed.data.next_attempt_in_seconds == round(msg.delay, 3)
    assert smtp.received == []
    assert js.buckets[DELIVERIES_BUCKET].data == {}


async def test_a_retry_after_a_451_delivers_and_is_recorded_as_sent(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.handler.replies = ["451 4.3.0 Please try again later"]
    await deliver(js, settings, requests[0], delivered=1)
    msg = await deliver(js, settings, requests[0], delivered=2)
    assert msg.outcome == "ack"
    assert len(smtp.received) == 1
    assert [type(e) for e in new_events(js)] == [NotificationFailed, NotificationSent]
    assert new_events(js)[1].data.attempt == 2  # type: ignore[attr-defined]


async def test_a_550_reply_is_a_permanent_failure_and_is_not_retried(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.handler.replies = ["550 5.1.1 <principal@hamline.district.example>: no such user"]
    msg = await deliver(js, settings, principal(requests))
    assert msg.outcome == "ack"
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed)
    assert failed.data.permanent is True
    assert failed.data.next_attempt_in_seconds is None
    assert failed.data.reason == "550 5.1.1 <address>: no such user"


async def test_a_transient_failure_at_the_last_attempt_becomes_permanent(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.handler.replies = ["451 4.3.0 Please try again later"]
    msg = await deliver(js, settings, requests[0], delivered=MAX_ATTEMPTS)
    assert msg.outcome == "ack"
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed)
    assert failed.data.permanent is True
    assert failed.data.attempt == MAX_ATTEMPTS
    assert failed.data.reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts: 451")


async def test_an_unreachable_mail_server_is_a_transient_failure(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.stop()
    try:
        msg = await deliver(js, settings, requests[0])
    finally:
        smtp.start()
    assert msg.outcome == "nack"
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed) and failed.data.permanent is False


async def test_a_request_whose_report_is_not_in_the_log_yet_is_retried(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    js.stored.clear()
    msg = await deliver(js, settings, requests[0])
    assert msg.outcome == "nack"
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed)
    assert "report is not in the log yet" in failed.data.reason
    assert smtp.received == []


async def test_a_contact_removed_from_the_directory_is_a_permanent_failure(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    req = next(r for r in requests if r.data.contact_id == "law-counsel")
    raw = DIRECTORY.model_dump()
    raw["roles"]["law"] = ["law-dept"]
    raw["contacts"] = [c for c in raw["contacts"] if c["id"] != "law-counsel"]
    for c in raw["contacts"]:
        c["backups"] = [b for b in c["backups"] if b != "law-counsel"]
    msg = await deliver(js, settings, req, directory=Directory.model_validate(raw))
    assert msg.outcome == "ack"
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed) and failed.data.permanent
    assert 'contact "law-counsel" is not in district.yaml' in failed.data.reason
    assert smtp.received == []


async def test_an_outcome_that_cannot_be_recorded_is_retried(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    smtp.handler.replies = ["550 5.1.1 no such user"]

    class Refusing(FakeJetStream):
        async def publish(self, *a: Any, **kw: Any) -> PubAck:
            raise RuntimeError("stream unavailable")

    refusing = Refusing()
    refusing.stored, refusing.buckets = js.stored, js.buckets
    msg = await deliver(refusing, settings, requests[0])
    assert (msg.outcome, msg.delay) == ("nack", 2.0)


async def test_a_poison_request_is_dead_lettered_and_rejected(settings: Settings) -> None:
    js, _ = log_with_report()
    notifier = Notifier(settings=settings, directory=DIRECTORY, broker=FakeBroker(js))  # type: ignore[arg-type]
    msg = FakeMessage(b"{{{", "dooralert.hamline.inc-1.notification.requested", consumer="notifier")
    await run_handler(
        msg,
        event_log=JetStreamEventLog(js, retry_for=settings.publish_retry_seconds),  # type: ignore[arg-type]
        consumer="notifier",
        expect=NotificationRequested,
        handle=notifier.handle,
    )
    assert msg.outcome == "reject"
    [dead] = new_events(js)
    assert dead.type == "message.dead_lettered"
    assert dead.source == "notifier"


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 30])
def test_retry_delays_grow_and_stay_under_the_cap(attempt: int) -> None:
    raw = min(300.0, 2.0 * 2 ** (attempt - 1))
    for _ in range(20):
        assert raw / 2 <= backoff(attempt, base=2.0, cap=300.0) <= raw


# --- through TestNatsBroker -----------------------------------------------------------------


def notifier_broker(js: FakeJetStream, settings: Settings) -> NatsBroker:
    broker = build_broker(settings, directory=DIRECTORY)
    # Connected before TestNatsBroker starts, so it keeps this connection instead of a mock.
    broker.config.connection_state.connect(FakeClient(js), js)  # type: ignore[arg-type]
    return broker


async def test_a_request_on_the_bus_is_emailed_and_recorded(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, requests = log_with_report()
    req = principal(requests)
    async with TestNatsBroker(notifier_broker(js, settings)) as br:
        await br.publish(
            serialize_event(req), subject_for(req), reply_to=ack_subject("notifier", delivered=1)
        )
    assert [m.rcpt for m in smtp.received] == [["principal@hamline.district.example"]]
    [sent] = new_events(js)
    assert isinstance(sent, NotificationSent)
    assert sent.data.notification_id == req.data.notification_id


async def test_a_poison_message_on_the_bus_is_dead_lettered(
    settings: Settings, smtp: SmtpServer
) -> None:
    js, _ = log_with_report()
    async with TestNatsBroker(notifier_broker(js, settings)) as br:
        await br.publish(
            b"not an event",
            "dooralert.hamline.inc-1.notification.requested",
            reply_to=ack_subject("notifier"),
        )
    [dead] = new_events(js)
    assert dead.type == "message.dead_lettered"
    assert smtp.received == []


async def test_an_unexpected_error_is_retried_as_a_recorded_failure_then_given_up(
    settings: Settings, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Notifier, req: NotificationRequested) -> str:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(Notifier, "_deliver", broken)
    js, requests = log_with_report()
    msg = await deliver(js, settings, requests[0], delivered=1)
    assert msg.outcome == "nack"
    [failed] = new_events(js)
    assert isinstance(failed, NotificationFailed) and not failed.data.permanent
    assert failed.data.reason == "internal error: OverflowError"
    js2, requests2 = log_with_report()
    last = await deliver(js2, settings, requests2[0], delivered=MAX_ATTEMPTS)
    assert last.outcome == "ack"
    [final] = new_events(js2)
    assert isinstance(final, NotificationFailed) and final.data.permanent


async def test_a_slow_send_keeps_telling_the_server_it_is_in_progress() -> None:
    import asyncio

    from services.notifier.main import _heartbeat

    class Msg:
        beats = 0

        async def in_progress(self) -> None:
            self.beats += 1

    msg = Msg()
    async with _heartbeat(msg, every=0.05):  # type: ignore[arg-type]
        await asyncio.sleep(0.18)
    beats = msg.beats
    await asyncio.sleep(0.1)
    assert beats >= 2 and msg.beats == beats  # beats while sending, none after
