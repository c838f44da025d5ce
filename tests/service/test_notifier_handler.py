"""The notifier's handler: each request becomes one email and a recorded outcome.

The notifier is built with a `FakeEventLog` (the services' `EventLog` interface in memory, with
the server's duplicate window) and a `FakeDeliveryRecords` (its `DeliveryRecords` in memory),
and sends to a real SMTP server (aiosmtpd, the `smtp` fixture) that can be told to answer 451
or 550. The delivery records' JetStream bucket is tested over a fake key-value bucket at the
end; delivery guarantees against a real nats-server are integration tests.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.message import Message
from typing import Any, cast

import pytest
from faststream.nats import NatsBroker, NatsMessage, TestNatsBroker
from nats.errors import TimeoutError as NatsTimeoutError

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
from services.domain.tokens import read_view_token
from services.eventlog import DELIVERIES_BUCKET
from services.eventlog.consumer import run_handler
from services.eventlog.interface import Appended
from services.intake.reports import encounter_event, parse_report
from services.notifier.handler import _all, _heartbeat, backoff
from services.notifier.main import Notifier, build_broker, build_notifier
from services.notifier.plan import Found
from services.notifier.records import DeliveryRecord, JetStreamDeliveryRecords
from services.notifier.smtp import SmtpPool
from services.router.decide import decide
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.service.fakes import (
    FakeDeliveryRecords,
    FakeEventLog,
    FakeJetStream,
    FakeKeyValue,
    FakeMessage,
    ack_subject,
)
from tests.support import EXAMPLES, TEST_KEYS, TEST_SECRET, SmtpServer, report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)

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
        secret_key=TEST_SECRET,
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


def log_with_report(
    **overrides: Any,
) -> tuple[FakeEventLog, FakeDeliveryRecords, list[NotificationRequested]]:
    """A log holding the incident's report, as the notifier finds it in production, and an
    empty delivery-records bucket."""
    log = FakeEventLog()
    reported, requests = incident(**overrides)
    log.store_raw(subject_for(reported), serialize_event(reported))
    return log, FakeDeliveryRecords(), requests


def new_events(log: FakeEventLog) -> list[Event]:
    return [e for e in log.events() if not isinstance(e, EncounterReported)]


def delivered_as(msg: FakeMessage) -> NatsMessage:
    """The fake as the handler sees it (it implements the part of NatsMessage used)."""
    return cast("NatsMessage", msg)


def plain_text(message: Message) -> str:
    part = message.get_payload(0)  # the text/plain alternative comes first
    assert isinstance(part, Message)
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data.decode()


async def deliver(
    log: FakeEventLog,
    records: FakeDeliveryRecords,
    settings: Settings,
    req: NotificationRequested,
    *,
    delivered: int = 1,
    directory: Directory = DIRECTORY,
) -> FakeMessage:
    _, notifier = build_notifier(settings, directory=directory, event_log=log, records=records)
    msg = FakeMessage(
        serialize_event(req), subject_for(req), consumer="notifier", delivered=delivered
    )
    try:
        await run_handler(
            delivered_as(msg),
            event_log=log,
            consumer="notifier",
            expect=NotificationRequested,
            handle=notifier.handle,
        )
    finally:
        await notifier.close()  # pooled SMTP sessions, HTTP client
    return msg


def principal(requests: list[NotificationRequested]) -> NotificationRequested:
    return next(r for r in requests if r.data.role == "principal")


# --- delivery -------------------------------------------------------------------------------


async def test_a_request_sends_one_email_records_it_and_acks(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    req = principal(requests)
    msg = await deliver(log, records, settings, req)
    assert msg.outcome == "ack"
    [mail] = smtp.received
    assert mail.rcpt == ["principal@hamline.district.example"]
    assert mail.message["Message-ID"] == f"<{req.data.notification_id}@dooralert>"
    assert "Hamline Elementary" in mail.message["Subject"]
    [sent] = new_events(log)
    assert isinstance(sent, NotificationSent)
    assert (sent.data.notification_id, sent.data.attempt) == (req.data.notification_id, 1)
    assert sent.causation_id == req.id
    assert sent.data.reply == "OK queued"  # the server's words, as it gave them
    assert records.stored[req.data.notification_id].attempt == 1


async def test_the_recorded_outcome_carries_the_requests_envelope(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    req = principal(requests)
    await deliver(log, records, settings, req)
    [sent] = new_events(log)
    assert (sent.source, sent.actor) == ("notifier", "system")
    assert (sent.incident_id, sent.school_id) == (req.incident_id, req.school_id)
    assert (sent.correlation_id, sent.causation_id) == (req.correlation_id, req.id)
    assert sent.occurred_at == sent.recorded_at


async def test_the_email_links_to_the_status_page_with_a_token_for_this_incident(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    await deliver(log, records, settings, requests[0])
    text = plain_text(smtp.received[0].message)
    line = next(x for x in text.splitlines() if "https://dooralert.example/incidents/inc-1" in x)
    token = line.split("token=")[1].strip()
    claim = read_view_token(TEST_KEYS, token, incident_id="inc-1", now=datetime.now(UTC))
    assert (claim.recipient, claim.notes) == (requests[0].data.contact_id, True)


async def test_recorded_outcomes_never_contain_an_address(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.handler.replies = ["550 5.1.1 <law-oncall@district.example>: Recipient address rejected"]
    for req in requests:
        await deliver(log, records, settings, req)
    assert len(new_events(log)) == len(requests)
    assert all(b"@" not in data for _, data in log.stored[1:])


async def test_a_notification_already_in_the_bucket_sends_no_email_and_republishes_sent(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    req = requests[0]
    records.stored[req.data.notification_id] = DeliveryRecord(2, "250 OK queued", at=NOW)
    msg = await deliver(log, records, settings, req, delivered=3)
    assert msg.outcome == "ack"
    assert smtp.received == []
    [sent] = new_events(log)
    assert isinstance(sent, NotificationSent)
    assert (sent.data.attempt, sent.data.reply) == (2, "250 OK queued")


async def test_an_emails_transaction_is_begun_on_a_first_delivery_only(
    settings: Settings, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    begun: list[tuple[str, str]] = []
    monkeypatch.setattr(SmtpPool, "begin", lambda self, sender, to: begun.append((sender, to)))
    log, records, requests = log_with_report()
    req = principal(requests)
    await deliver(log, records, settings, req, delivered=1)
    assert begun == [(settings.smtp_from, "principal@hamline.district.example")]
    # Redelivered (most likely sent before a crash): no transaction to end unused.
    del records.stored[req.data.notification_id]
    await deliver(log, records, settings, req, delivered=2)
    assert len(begun) == 1
    assert len(smtp.received) == 2


async def test_a_redelivered_request_sends_no_second_email(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    await deliver(log, records, settings, requests[0], delivered=1)
    again = await deliver(log, records, settings, requests[0], delivered=2)
    assert again.outcome == "ack"
    assert len(smtp.received) == 1
    assert len(new_events(log)) == 1  # the republished `sent` has the same id: a duplicate


async def test_a_451_reply_is_a_transient_failure_retried_after_a_backoff(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.handler.replies = ["451 4.3.0 Please try again later"]
    msg = await deliver(log, records, settings, requests[0], delivered=1)
    assert msg.outcome == "nack"
    assert msg.delay is not None and 0 < msg.delay <= settings.retry_max_seconds
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed)
    assert failed.data.permanent is False
    assert failed.data.attempt == 1
    assert failed.data.reason.startswith("451")
    assert failed.data.next_attempt_in_seconds == round(msg.delay, 3)
    assert smtp.received == []
    assert records.stored == {}


async def test_a_retry_after_a_451_delivers_and_is_recorded_as_sent(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.handler.replies = ["451 4.3.0 Please try again later"]
    await deliver(log, records, settings, requests[0], delivered=1)
    msg = await deliver(log, records, settings, requests[0], delivered=2)
    assert msg.outcome == "ack"
    assert len(smtp.received) == 1
    assert [type(e) for e in new_events(log)] == [NotificationFailed, NotificationSent]
    sent = new_events(log)[1]
    assert isinstance(sent, NotificationSent) and sent.data.attempt == 2


async def test_a_550_reply_is_a_permanent_failure_and_is_not_retried(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.handler.replies = ["550 5.1.1 <principal@hamline.district.example>: no such user"]
    msg = await deliver(log, records, settings, principal(requests))
    assert msg.outcome == "ack"
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed)
    assert failed.data.permanent is True
    assert failed.data.next_attempt_in_seconds is None
    assert failed.data.reason == "550 5.1.1 <address>: no such user"


async def test_a_transient_failure_at_the_last_attempt_becomes_permanent(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.handler.replies = ["451 4.3.0 Please try again later"]
    msg = await deliver(log, records, settings, requests[0], delivered=MAX_ATTEMPTS)
    assert msg.outcome == "ack"
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed)
    assert failed.data.permanent is True
    assert failed.data.attempt == MAX_ATTEMPTS
    assert failed.data.reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts: 451")


async def test_an_unreachable_mail_server_is_a_transient_failure(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.stop()
    try:
        msg = await deliver(log, records, settings, requests[0])
    finally:
        smtp.start()
    assert msg.outcome == "nack"
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed) and failed.data.permanent is False


async def test_a_request_whose_report_is_not_in_the_log_yet_is_retried(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    log.messages.clear()
    msg = await deliver(log, records, settings, requests[0])
    assert msg.outcome == "nack"
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed)
    assert "report is not in the log yet" in failed.data.reason
    assert smtp.received == []


async def test_a_contact_removed_from_the_directory_is_a_permanent_failure(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    req = next(r for r in requests if r.data.contact_id == "law-counsel")
    raw = DIRECTORY.model_dump()
    raw["roles"]["law"] = ["law-dept"]
    raw["contacts"] = [c for c in raw["contacts"] if c["id"] != "law-counsel"]
    for c in raw["contacts"]:
        c["backups"] = [b for b in c["backups"] if b != "law-counsel"]
    raw["audit"]["witnesses"] = [w for w in raw["audit"]["witnesses"] if w != "law-counsel"]
    msg = await deliver(log, records, settings, req, directory=Directory.model_validate(raw))
    assert msg.outcome == "ack"
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed) and failed.data.permanent
    assert 'contact "law-counsel" is not in district.yaml' in failed.data.reason
    assert smtp.received == []


async def test_an_outcome_that_cannot_be_recorded_is_retried(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    smtp.handler.replies = ["550 5.1.1 no such user"]

    class Refusing(FakeEventLog):
        async def append(self, event: Event) -> Appended:
            raise RuntimeError("stream unavailable")

    refusing = Refusing()
    refusing.messages = log.messages
    msg = await deliver(refusing, records, settings, requests[0])
    assert (msg.outcome, msg.delay) == ("nack", 2.0)


async def test_a_delivery_record_that_cannot_be_read_is_retried_without_sending(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    records.fail_with = NatsTimeoutError()
    msg = await deliver(log, records, settings, requests[0])
    assert (msg.outcome, msg.delay) == ("nack", 2.0)
    assert smtp.received == [] and new_events(log) == []


async def test_a_poison_request_is_dead_lettered_and_rejected(settings: Settings) -> None:
    log, records, _ = log_with_report()
    _, notifier = build_notifier(settings, directory=DIRECTORY, event_log=log, records=records)
    msg = FakeMessage(b"{{{", "dooralert.hamline.inc-1.notification.requested", consumer="notifier")
    await run_handler(
        delivered_as(msg),
        event_log=log,
        consumer="notifier",
        expect=NotificationRequested,
        handle=notifier.handle,
    )
    assert msg.outcome == "reject"
    [dead] = new_events(log)
    assert dead.type == "message.dead_lettered"
    assert dead.source == "notifier"


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 30])
def test_retry_delays_grow_and_stay_under_the_cap(attempt: int) -> None:
    raw = min(300.0, 2.0 * 2 ** (attempt - 1))
    for _ in range(20):
        assert raw / 2 <= backoff(attempt, base=2.0, cap=300.0) <= raw


# --- through TestNatsBroker -----------------------------------------------------------------


def notifier_broker(
    log: FakeEventLog, records: FakeDeliveryRecords, settings: Settings
) -> NatsBroker:
    return build_broker(settings, directory=DIRECTORY, event_log=log, records=records)


async def test_a_request_on_the_bus_is_emailed_and_recorded(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report()
    req = principal(requests)
    async with TestNatsBroker(notifier_broker(log, records, settings)) as br:
        await br.publish(
            serialize_event(req), subject_for(req), reply_to=ack_subject("notifier", delivered=1)
        )
    assert [m.rcpt for m in smtp.received] == [["principal@hamline.district.example"]]
    [sent] = new_events(log)
    assert isinstance(sent, NotificationSent)
    assert sent.data.notification_id == req.data.notification_id


async def test_a_poison_message_on_the_bus_is_dead_lettered(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, _ = log_with_report()
    async with TestNatsBroker(notifier_broker(log, records, settings)) as br:
        await br.publish(
            b"not an event",
            "dooralert.hamline.inc-1.notification.requested",
            reply_to=ack_subject("notifier"),
        )
    [dead] = new_events(log)
    assert dead.type == "message.dead_lettered"
    assert smtp.received == []


async def test_an_unexpected_error_is_retried_as_a_recorded_failure_then_given_up(
    settings: Settings, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(
        self: Notifier, req: NotificationRequested, found: Found, begun: object = None
    ) -> str:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(Notifier, "_deliver", broken)
    log, records, requests = log_with_report()
    msg = await deliver(log, records, settings, requests[0], delivered=1)
    assert msg.outcome == "nack"
    [failed] = new_events(log)
    assert isinstance(failed, NotificationFailed) and not failed.data.permanent
    assert failed.data.reason == "internal error: OverflowError"
    log2, records2, requests2 = log_with_report()
    last = await deliver(log2, records2, settings, requests2[0], delivered=MAX_ATTEMPTS)
    assert last.outcome == "ack"
    [final] = new_events(log2)
    assert isinstance(final, NotificationFailed) and final.data.permanent


async def test_a_slow_send_keeps_telling_the_server_it_is_in_progress() -> None:
    class Msg:
        beats = 0

        async def in_progress(self) -> None:
            self.beats += 1

    msg = Msg()
    async with _heartbeat(cast("NatsMessage", msg), every=0.05):
        await asyncio.sleep(0.18)
    beats = msg.beats
    await asyncio.sleep(0.1)
    assert beats >= 2 and msg.beats == beats  # beats while sending, none after


async def test_the_record_and_the_event_are_both_written_before_a_failure_is_raised() -> None:
    done: list[str] = []

    async def write(name: str, delay: float, fail: bool = False) -> None:
        await asyncio.sleep(delay)
        done.append(name)
        if fail:
            raise RuntimeError(name)

    await _all(write("record", 0.02), write("event", 0.01))
    assert sorted(done) == ["event", "record"]
    done.clear()
    # Both fail: the first in argument order is raised, after the slower one has settled.
    with pytest.raises(RuntimeError, match=r"^record$"):
        await _all(write("record", 0.01, fail=True), write("event", 0.03, fail=True))
    assert done == ["record", "event"]
    done.clear()
    with pytest.raises(RuntimeError, match=r"^event$"):
        await _all(write("record", 0.03), write("event", 0.01, fail=True))
    assert done == ["event", "record"]


async def test_cancelling_the_writes_cancels_each_of_them() -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(10)

    record = asyncio.ensure_future(slow())
    writes = asyncio.ensure_future(_all(record, asyncio.sleep(10)))
    await started.wait()
    writes.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writes
    await asyncio.sleep(0)
    assert record.cancelled()


# --- the delivery records' JetStream bucket -------------------------------------------------


def bucket() -> tuple[FakeJetStream, FakeKeyValue]:
    js = FakeJetStream()
    js.buckets[DELIVERIES_BUCKET] = FakeKeyValue()
    return js, js.buckets[DELIVERIES_BUCKET]


async def test_a_delivery_record_is_stored_as_json_and_read_back() -> None:
    js, kv = bucket()
    records = JetStreamDeliveryRecords(js, retry_for=0.3)  # type: ignore[arg-type]  # a fake
    await records.put("n-1", DeliveryRecord(1, "250 OK", at=NOW))
    assert json.loads(kv.data["n-1"]) == {"attempt": 1, "reply": "250 OK", "at": NOW.isoformat()}
    assert await records.get("n-1") == DeliveryRecord(1, "250 OK", at=NOW)
    assert await records.get("n-2") is None


async def test_an_empty_delivery_record_counts_as_none() -> None:
    js, kv = bucket()
    kv.data["n-1"] = b""
    records = JetStreamDeliveryRecords(js, retry_for=0.3)  # type: ignore[arg-type]  # a fake
    assert await records.get("n-1") is None


async def test_a_delivery_record_lookup_rides_out_a_timeout() -> None:
    js, kv = bucket()
    kv.data["n-1"] = json.dumps({"attempt": 2, "reply": "250 OK", "at": NOW.isoformat()}).encode()

    class Flaky(FakeKeyValue):
        calls = 0

        async def get(self, key: str) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise NatsTimeoutError
            return await super().get(key)

    flaky = Flaky()
    flaky.data = kv.data
    js.buckets[DELIVERIES_BUCKET] = flaky
    records = JetStreamDeliveryRecords(js, retry_for=0.3)  # type: ignore[arg-type]  # a fake
    record = await records.get("n-1")
    assert record is not None and (record.attempt, record.reply) == (2, "250 OK")
    assert flaky.calls == 2
