"""The notifier reads an incident's report from the log once for all of its alerts, and every
alert still goes out once with the report, recorded by an event (issue 13)."""

from __future__ import annotations

import pytest

from schemas.events import NotificationRequested, NotificationSent, serialize_event, subject_for
from services.eventlog.consumer import run_handler
from services.notifier.main import Notifier, build_notifier
from services.notifier.reports import ReportCache
from services.runtime.settings import Settings
from tests.service.fakes import FakeDeliveryRecords, FakeEventLog, FakeMessage
from tests.service.test_notifier_handler import (
    DIRECTORY,
    delivered_as,
    incident,
    new_events,
    plain_text,
)
from tests.support import TEST_SECRET, SmtpServer


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


def _address(contact_id: str) -> str:
    contact = DIRECTORY.contact(contact_id)
    assert contact is not None
    return str(contact.channels[0].address)
