"""The router's handler: every encounter becomes a decision, and no message is lost silently.

The router is built with a `FakeEventLog` (the services' `EventLog` interface in memory, with
the server's duplicate window); `TestNatsBroker` delivers to it. Delivery guarantees against
a real nats-server are integration tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from faststream.nats import NatsBroker, TestNatsBroker
from nats.errors import TimeoutError as NatsTimeoutError

from schemas.events import (
    EncounterReported,
    EscalationDecided,
    Event,
    MessageDeadLettered,
    NotificationRequested,
    parse_event,
    serialize_event,
    subject_for,
)
from services.domain.directory import load_directory
from services.eventlog.consumer import run_handler
from services.eventlog.interface import EventLog
from services.eventlog.jetstream import JetStreamEventLog
from services.intake.reports import encounter_event, parse_report
from services.router.main import build_broker
from services.router.rules import Rules
from services.runtime.settings import Settings
from tests.support import EXAMPLES, report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)

# --- fakes ----------------------------------------------------------------------------------
from tests.service.fakes import FakeEventLog, FakeJetStream, FakeMessage, ack_subject  # noqa: E402

# --- helpers --------------------------------------------------------------------------------

SETTINGS = Settings(publish_timeout_seconds=0.05, publish_retry_seconds=0.3)


def encounter(incident_id: str = "inc-1", **overrides: Any) -> EncounterReported:
    r = parse_report(report(**overrides), now=NOW)
    return encounter_event(r, incident_id=incident_id, actor="key-hamline", now=NOW)


def example_routes() -> Rules:
    """The example's routes only: pattern rules read the whole log and are tested elsewhere."""
    raw = yaml.safe_load((EXAMPLES / "rules.yaml").read_text())
    return Rules.model_validate({"version": raw["version"], "routes": raw["routes"]})


def router(js: EventLog) -> NatsBroker:
    return build_broker(
        SETTINGS, rules=example_routes(), directory=load_directory(EXAMPLES), event_log=js
    )


def subscriber_function(broker: NatsBroker) -> Callable[[bytes, Any], Awaitable[None]]:
    """The function the router declared as its subscriber, to call with a FakeMessage."""
    [fn] = [
        s.calls[0].handler._original_call
        for s in broker.subscribers
        if s.calls[0].handler._original_call.__name__ == "on_encounter"
    ]
    return fn  # type: ignore[no-any-return]


async def deliver(js: EventLog, data: bytes, subject: str, **kw: Any) -> FakeMessage:
    msg = FakeMessage(data, subject, **kw)
    await subscriber_function(router(js))(data, msg)
    return msg


REPORT_SUBJECT = "dooralert.hamline.inc-1.encounter.reported"


def decisions(js: FakeEventLog) -> list[Event]:
    return [e for e in js.events() if e.type in ("escalation.decided", "notification.requested")]


# --- through TestNatsBroker -----------------------------------------------------------------


async def test_an_encounter_report_becomes_a_decision_and_one_request_per_contact() -> None:
    js = FakeEventLog()
    event = encounter()
    async with TestNatsBroker(router(js)) as br:
        await br.publish(serialize_event(event), subject_for(event))
    decided, *requests = decisions(js)
    assert isinstance(decided, EscalationDecided)
    assert decided.causation_id == event.id
    assert [type(e) for e in requests] == [NotificationRequested] * 4
    assert [e.data.contact_id for e in requests] == [  # type: ignore[attr-defined]
        "law-dept",
        "law-counsel",
        "safety-office",
        "principal-hamline",
    ]
    assert all(s == subject_for(parse_event(d)) for s, d in js.stored)
    assert all(s.startswith("dooralert.hamline.inc-1.") for s, _ in js.stored)


async def test_a_redelivered_report_adds_no_second_decision() -> None:
    js = FakeEventLog()
    event = encounter()
    async with TestNatsBroker(router(js)) as br:
        await br.publish(serialize_event(event), subject_for(event))
        await br.publish(serialize_event(event), subject_for(event))
    # The second run derived the same ids: the server drops every one as a duplicate.
    assert len(decisions(js)) == 5


async def test_a_poison_message_on_the_bus_is_dead_lettered() -> None:
    js = FakeEventLog()
    async with TestNatsBroker(router(js)) as br:
        await br.publish(b"\xff not json", REPORT_SUBJECT, reply_to=ack_subject("router"))
    [dead] = [e for e in js.events() if getattr(e.data, "consumer", None) == "router"]
    assert isinstance(dead, MessageDeadLettered)
    assert (dead.school_id, dead.incident_id, dead.source) == ("hamline", "inc-1", "router")
    assert dead.data.subject == REPORT_SUBJECT and dead.data.stream_sequence == 17
    assert dead.data.consumer == "router"
    assert "not JSON" in dead.data.reason


# --- settling the message (the handler called with a FakeMessage) ---------------------------


async def test_a_decided_report_is_acked() -> None:
    js = FakeEventLog()
    event = encounter()
    msg = await deliver(js, serialize_event(event), subject_for(event))
    assert msg.outcome == "ack"
    assert len(decisions(js)) == 5


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe garbage", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"hello": "world"}', "type"),
        (serialize_event(encounter()).replace(b'"ice"', b'"la migra"'), "agency_stated"),
    ],
    ids=["binary", "broken-json", "json-array", "not-an-event", "invalid-report"],
)
async def test_an_unreadable_message_is_dead_lettered_and_rejected(
    payload: bytes, reason: str
) -> None:
    js = FakeEventLog()
    msg = await deliver(js, payload, REPORT_SUBJECT, seq=99)
    assert msg.outcome == "reject"  # terminated: never redelivered, never silently acked
    [dead] = js.events()
    assert isinstance(dead, MessageDeadLettered)
    assert dead.data.stream_sequence == 99
    assert reason in dead.data.reason


async def test_an_event_of_the_wrong_type_is_dead_lettered_not_decided() -> None:
    js = FakeEventLog()
    wrong = encounter().model_dump()
    decided = EscalationDecided.model_validate(
        {
            **{k: v for k, v in wrong.items() if k not in ("type", "schema_version", "data")},
            "data": {
                "routes": [],
                "severity": "high",
                "notify_roles": [],
                "require_ack": [],
                "recipients": [],
            },
        }
    )
    msg = await deliver(js, serialize_event(decided), REPORT_SUBJECT)
    assert msg.outcome == "reject"
    [dead] = js.events()
    assert isinstance(dead, MessageDeadLettered)
    # The subject names the type the server let the publisher write: the payload must agree.
    assert "subject says encounter.reported but the payload is escalation.decided" in (
        dead.data.reason
    )


async def test_a_poison_message_on_a_malformed_subject_is_still_dead_lettered() -> None:
    js = FakeEventLog()
    msg = await deliver(js, b"nope", "dooralert.BAD SCHOOL.x.encounter.reported")
    assert msg.outcome == "reject"
    [dead] = js.events()
    assert (dead.school_id, dead.incident_id) == ("unknown", "x")


async def test_the_same_poison_message_redelivered_is_dead_lettered_once() -> None:
    js = FakeEventLog()
    await deliver(js, b"nope", REPORT_SUBJECT, seq=5)
    await deliver(js, b"nope", REPORT_SUBJECT, seq=5, delivered=2)
    assert len(js.stored) == 1


async def test_a_poison_message_that_cannot_be_recorded_is_retried_not_dropped() -> None:
    js = FakeEventLog()
    js.fail_with = RuntimeError("stream unavailable")
    msg = await deliver(js, b"nope", REPORT_SUBJECT)
    assert msg.outcome == "nack"
    assert msg.delay == 2.0


async def test_a_failing_handler_is_retried_after_a_delay() -> None:
    js = FakeEventLog()
    js.fail_with = RuntimeError("stream unavailable")
    event = encounter()
    msg = await deliver(js, serialize_event(event), subject_for(event))
    assert msg.outcome == "nack"
    assert msg.delay == 2.0
    assert js.stored == []


async def test_a_report_is_retried_when_jetstream_keeps_timing_out() -> None:
    js = FakeJetStream()
    js.fail_with = NatsTimeoutError()
    event = encounter()
    log = JetStreamEventLog(js, publish_timeout=0.05, retry_for=0.3)  # type: ignore[arg-type]
    msg = await deliver(log, serialize_event(event), subject_for(event))
    assert msg.outcome == "nack"
    assert js.publishes > 1  # publish_event retried within publish_retry_seconds first


async def test_a_handler_asking_for_a_retry_is_nacked_with_its_delay() -> None:
    js = FakeEventLog()
    event = encounter()
    msg = FakeMessage(serialize_event(event), subject_for(event))

    async def later(_: Event, __: Any) -> float:
        return 7.5

    await run_handler(
        msg,
        event_log=js,
        consumer="router",
        expect=EncounterReported,
        handle=later,
    )
    assert (msg.outcome, msg.delay) == ("nack", 7.5)
