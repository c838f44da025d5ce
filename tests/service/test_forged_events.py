"""A forged payload reaching a consumer is set aside, never handled (DESIGN §4).

Each service user may publish only on its own event types' subjects; a compromised one can
still write any payload there. The consumers read the type, school and incident from the
subject the server vouches for: a payload that disagrees is dead-lettered and rejected like
an unreadable one, and the incident never shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from schemas.envelope import originating
from schemas.events import (
    Event,
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    MessageDeadLettered,
    NotificationRequested,
    derive_id,
    serialize_event,
    subject_for,
)
from services.domain.directory import load_directory
from services.domain.incident import fold
from services.eventlog.consumer import run_handler
from services.intake.reports import encounter_event, parse_report
from services.router.main import build_broker
from services.router.rules import Rules
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog, FakeMessage
from tests.support import EXAMPLES, report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def forged_ack(role: str) -> IncidentAcknowledged:
    return originating(
        IncidentAcknowledged,
        IncidentAcknowledgedData(role=role, contact_id="law-dept", via="link"),
        id=derive_id("forged", role),
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        now=NOW,
    )


def reported_log() -> FakeEventLog:
    log = FakeEventLog()
    r = parse_report(report(), now=NOW)
    event = encounter_event(r, incident_id="inc-1", actor="key-hamline", now=NOW)
    log.store_raw(subject_for(event), serialize_event(event))
    return log


@pytest.mark.parametrize(
    ("consumer", "expect", "event_type"),
    [
        ("router-followups", Event, "encounter.updated"),  # the intake user's subject
        ("router-followups", Event, "notification.failed"),  # the notifier user's
        ("notifier", NotificationRequested, "notification.requested"),  # router's, notifier's
    ],
)
async def test_a_forged_ack_on_a_consumers_subject_is_dead_lettered_not_handled(
    consumer: str, expect: type[Event], event_type: str
) -> None:
    log = reported_log()
    handled: list[Event] = []

    async def handle(event: Any, _: Any) -> None:
        handled.append(event)

    subject = f"dooralert.hamline.inc-1.{event_type}"
    msg = FakeMessage(serialize_event(forged_ack("law")), subject, consumer=consumer, seq=42)
    await run_handler(msg, event_log=log, consumer=consumer, expect=expect, handle=handle)  # type: ignore[arg-type]

    assert msg.outcome == "reject" and handled == []
    [dead] = [e for e in log.events() if isinstance(e, MessageDeadLettered)]
    assert dead.data.reason == f"subject says {event_type} but the payload is incident.acknowledged"
    assert (dead.data.stream_sequence, dead.data.subject) == (42, subject)
    # The forged bytes are in the log, but the incident never counts them.
    state = fold(await log.read_incident("inc-1"), incident_id="inc-1")
    assert state is not None and state.acknowledgements == []


async def test_the_router_passes_no_forged_update_on_to_anyone() -> None:
    log = reported_log()
    raw = yaml.safe_load((EXAMPLES / "rules.yaml").read_text())
    rules = Rules.model_validate({"version": raw["version"], "routes": raw["routes"]})
    broker = build_broker(
        Settings(publish_timeout_seconds=0.05, publish_retry_seconds=0.3),
        rules=rules,
        directory=load_directory(EXAMPLES),
        event_log=log,
    )
    [on_followup] = [
        s.calls[0].handler._original_call
        for s in broker.subscribers
        if s.calls[0].handler._original_call.__name__ == "on_followup"
    ]
    data = serialize_event(forged_ack("safety"))
    msg = FakeMessage(data, "dooralert.hamline.inc-1.encounter.updated", consumer="router")
    await on_followup(data, msg)
    assert msg.outcome == "reject"
    assert [e.type for e in log.events()] == ["encounter.reported", "message.dead_lettered"]
