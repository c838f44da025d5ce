"""The notifier reads an incident's report from the log once for all of its alerts, and every
alert still goes out once with the report, recorded by an event (issue 13)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from schemas.events import (
    EncounterReported,
    Event,
    NotificationRequested,
    NotificationSent,
    serialize_event,
    subject_for,
)
from services.domain.sealing import encode_key, new_key
from services.eventlog.consumer import run_handler
from services.eventlog.interface import Appended
from services.eventlog.notekeys import MemoryNoteKeys
from services.intake.notes import Sealer
from services.intake.reports import encounter_event, parse_report
from services.notifier.main import Notifier, build_notifier
from services.notifier.records import DeliveryRecord
from services.notifier.reports import ReportCache, SingleFlight
from services.router.decide import decide
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.service.fakes import FakeDeliveryRecords, FakeEventLog, FakeMessage
from tests.service.test_notifier_handler import (
    DIRECTORY,
    NOW,
    delivered_as,
    incident,
    log_with_report,
    new_events,
    plain_text,
)
from tests.support import EXAMPLES, TEST_SECRET, SmtpServer, report


@pytest.fixture
def settings(smtp: SmtpServer) -> Settings:
    """Replaces the shared `settings` fixture here: no nats-server is needed for these tests."""
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_timeout=5.0,
        secret_key=TEST_SECRET,
        retry_base_seconds=0.05,
        max_attempts=3,
        public_url="https://dooralert.example",
    )


class CountingLog(FakeEventLog):
    """The in-memory log, counting reads of each event type's last message."""

    def __init__(self) -> None:
        super().__init__()
        self.lasts: dict[str, int] = {}

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        self.lasts[event_type] = self.lasts.get(event_type, 0) + 1
        return await super().last(school_id, incident_id, event_type)


async def handle(notifier: Notifier, log: FakeEventLog, req: NotificationRequested) -> str | None:
    msg = FakeMessage(serialize_event(req), subject_for(req), consumer="notifier", delivered=1)
    await run_handler(
        delivered_as(msg),
        event_log=log,
        consumer="notifier",
        expect=NotificationRequested,
        handle=notifier.handle,
    )
    return msg.outcome


async def test_an_incidents_alerts_read_its_report_once_and_each_is_sent_and_recorded(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records = CountingLog(), FakeDeliveryRecords()
    reported, requests = incident(location="Gym door B")
    log.store_raw(subject_for(reported), serialize_event(reported))
    _, notifier = build_notifier(settings, directory=DIRECTORY, event_log=log, records=records)
    try:
        outcomes = [await handle(notifier, log, req) for req in requests]
    finally:
        await notifier.close()
    assert len(requests) >= 4
    assert outcomes == ["ack"] * len(requests)
    assert log.lasts["encounter.reported"] == 1
    assert sorted(m.rcpt[0] for m in smtp.received) == sorted(
        _address(r.data.contact_id) for r in requests
    )
    assert all("Gym door B" in plain_text(m.message) for m in smtp.received)
    sent = [e for e in new_events(log) if isinstance(e, NotificationSent)]
    assert sorted(e.data.notification_id for e in sent) == sorted(
        r.data.notification_id for r in requests
    )


async def test_a_report_not_in_the_log_yet_is_read_again_on_the_retry(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records = CountingLog(), FakeDeliveryRecords()
    reported, requests = incident()
    _, notifier = build_notifier(settings, directory=DIRECTORY, event_log=log, records=records)
    try:
        assert await handle(notifier, log, requests[0]) == "nack"
        log.store_raw(subject_for(reported), serialize_event(reported))
        assert await handle(notifier, log, requests[0]) == "ack"
    finally:
        await notifier.close()
    assert log.lasts["encounter.reported"] == 2
    assert [m.rcpt[0] for m in smtp.received] == [_address(requests[0].data.contact_id)]


def test_the_newest_incidents_reports_are_kept() -> None:
    reports = [incident()[0].model_copy(update={"incident_id": f"inc-{i}"}) for i in range(3)]
    cache = ReportCache(size=2)
    for r in reports:
        cache.put(r)
    assert len(cache) == 2
    assert cache.get(reports[0].school_id, "inc-0") is None
    assert cache.get(reports[2].school_id, "inc-2") is reports[2]
    assert cache.get("lincoln-park", "inc-2") is None  # another school's incident id


class SlowLog(CountingLog):
    """A log whose reads take a while (a real round trip), so concurrent requests overlap."""

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        await asyncio.sleep(0.02)
        return await super().last(school_id, incident_id, event_type)


async def test_alerts_handled_together_share_one_read_of_the_report(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records = SlowLog(), FakeDeliveryRecords()
    reported, requests = incident(location="Side door")
    log.store_raw(subject_for(reported), serialize_event(reported))
    _, notifier = build_notifier(settings, directory=DIRECTORY, event_log=log, records=records)
    try:
        outcomes = await asyncio.gather(*(handle(notifier, log, req) for req in requests))
    finally:
        await notifier.close()
    assert outcomes == ["ack"] * len(requests)
    # One read for all of them, though none found the report remembered when it started.
    assert log.lasts["encounter.reported"] == 1
    assert len(smtp.received) == len(requests)
    assert all("Side door" in plain_text(m.message) for m in smtp.received)


class RendezvousRecords(FakeDeliveryRecords):
    """Records whose get answers only once the log was read, and whose put completes only
    once the sent event is being appended: a notifier doing them one after the other would
    wait here for ever."""

    def __init__(self, log: RendezvousLog) -> None:
        super().__init__()
        self.log = log

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        await asyncio.wait_for(self.log.read.wait(), timeout=5)
        return await super().get(notification_id)

    async def put(self, notification_id: str, record: DeliveryRecord) -> None:
        await asyncio.wait_for(self.log.appending.wait(), timeout=5)
        await super().put(notification_id, record)


class RendezvousLog(CountingLog):
    def __init__(self) -> None:
        super().__init__()
        self.read, self.appending = asyncio.Event(), asyncio.Event()

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        self.read.set()
        return await super().last(school_id, incident_id, event_type)

    async def append(self, event: Event) -> Appended:
        if isinstance(event, NotificationSent):
            self.appending.set()
        return await super().append(event)


async def test_the_record_lookup_and_the_report_read_overlap_and_so_do_the_two_writes(
    settings: Settings, smtp: SmtpServer
) -> None:
    log = RendezvousLog()
    records = RendezvousRecords(log)
    reported, requests = incident()
    log.store_raw(subject_for(reported), serialize_event(reported))
    _, notifier = build_notifier(settings, directory=DIRECTORY, event_log=log, records=records)
    try:
        assert await handle(notifier, log, requests[0]) == "ack"
    finally:
        await notifier.close()
    # Both stored before the ack: the record, and the event.
    assert requests[0].data.notification_id in records.stored
    assert [e.data.notification_id for e in new_events(log) if isinstance(e, NotificationSent)] == [
        requests[0].data.notification_id
    ]


async def test_single_flight_shares_a_read_in_flight_and_keeps_nothing_after_it() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def read() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiters = [asyncio.ensure_future(flight.read("k", read)) for _ in range(4)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one caller gives up: the read the others wait on goes on
    gate.set()
    assert await asyncio.gather(*waiters[1:]) == [1, 1, 1]
    assert calls == 1 and len(flight) == 0
    assert await flight.read("k", read) == 2  # done reads are not kept: a new read


async def test_single_flight_gives_every_waiter_the_error_then_reads_again() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise TimeoutError("nats")

    waiters = [asyncio.ensure_future(flight.read("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    assert flight.reads == 1

    async def fine() -> int:
        return 7

    assert await flight.read("k", fine) == 7 and flight.reads == 2


def _address(contact_id: str) -> str:
    contact = DIRECTORY.contact(contact_id)
    assert contact is not None
    return str(contact.channels[0].address)


class KeyAfterReportRead(MemoryNoteKeys):
    """Notes keys that answer only once the log's report read has started, whose report read
    answers only once the key read has started (`KeyRendezvousLog`): a notifier reading the key
    after the report would wait here for ever."""

    def __init__(self, log: KeyRendezvousLog) -> None:
        super().__init__()
        self.log, self.reads = log, 0

    async def get(self, incident_id: str) -> bytes | None:
        self.reads += 1
        self.log.key_read.set()
        await asyncio.wait_for(self.log.read.wait(), timeout=5)
        return await super().get(incident_id)


class KeyRendezvousLog(CountingLog):
    def __init__(self) -> None:
        super().__init__()
        self.read, self.key_read = asyncio.Event(), asyncio.Event()

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        self.read.set()
        await asyncio.wait_for(self.key_read.wait(), timeout=5)
        return await super().last(school_id, incident_id, event_type)


def sealed_incident(notes: str) -> tuple[EncounterReported, list[NotificationRequested], bytes]:
    """An incident whose report's notes are sealed, its requests, and its key as stored."""
    key = new_key("inc-1", now=datetime.now(UTC))  # within the notes' retention
    r = parse_report(report(notes=notes), now=NOW)
    reported = encounter_event(
        r, incident_id="inc-1", actor="key-hamline", now=NOW, seal=Sealer(key, "inc-1")
    )
    out = decide(reported, rules=load_rules(EXAMPLES), directory=DIRECTORY, now=NOW)
    return reported, [e for e in out if isinstance(e, NotificationRequested)], encode_key(key)


async def test_the_notes_key_is_read_while_the_report_is_and_the_email_has_the_notes(
    settings: Settings, smtp: SmtpServer
) -> None:
    log = KeyRendezvousLog()
    keys = KeyAfterReportRead(log)
    reported, requests, key = sealed_incident("Kept outside by the front desk.")
    keys.keys["inc-1"] = key
    log.store_raw(subject_for(reported), serialize_event(reported))
    _, notifier = build_notifier(
        settings, directory=DIRECTORY, event_log=log, records=FakeDeliveryRecords(), note_keys=keys
    )
    try:
        assert await handle(notifier, log, requests[0]) == "ack"
        # The next alert of the incident finds its report remembered, with notes: it reads the
        # key (a key forgotten meanwhile is not used), without the report.
        log.read.set()
        assert await handle(notifier, log, requests[1]) == "ack"
    finally:
        await notifier.close()
    assert keys.reads == 2 and log.lasts["encounter.reported"] == 1
    assert all("Kept outside by the front desk." in plain_text(m.message) for m in smtp.received)


async def test_no_key_is_read_for_a_remembered_report_without_notes(
    settings: Settings, smtp: SmtpServer
) -> None:
    log, records, requests = log_with_report(notes=None)
    keys = CountingKeys()
    _, notifier = build_notifier(
        settings, directory=DIRECTORY, event_log=log, records=records, note_keys=keys
    )
    try:
        # The first alert reads the key with the report (not known yet to have no notes)...
        assert await handle(notifier, log, requests[0]) == "ack"
        first = keys.reads
        # ...the others find the report remembered, without notes: no key read.
        for req in requests[1:]:
            assert await handle(notifier, log, req) == "ack"
    finally:
        await notifier.close()
    assert first <= 1 and keys.reads == first
    assert len(smtp.received) == len(requests)


class CountingKeys(MemoryNoteKeys):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, incident_id: str) -> bytes | None:
        self.reads += 1
        return await super().get(incident_id)
