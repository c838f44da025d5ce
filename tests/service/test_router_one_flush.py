"""A report's decision and requests go out in one flush; the deadline waits for the decision.

The router hands the client the decision and every request before it awaits any PubAck, and
arms the tier-1 deadline only once the decision is stored. If the decision's publish fails,
requests may be stored without it: these tests check a retry (in the publish, or the report
redelivered) stores it under the same id, stores no request twice, and arms the deadline
once, leaving the incident as a clean run does. Against a real nats-server:
tests/integration/test_router_one_flush.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError

from schemas.events import (
    EncounterReported,
    EscalationDecided,
    derive_id,
    serialize_event,
    subject_for,
)
from services.domain.directory import load_directory
from services.domain.incident import IncidentState, fold
from services.eventlog.consumer import run_handler
from services.eventlog.jetstream import JetStreamEventLog
from services.router.main import Router
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.service.fakes import FakeJetStream, FakeMessage
from tests.service.test_router_handler import encounter
from tests.support import EXAMPLES

SETTINGS = Settings(publish_timeout_seconds=0.05, publish_retry_seconds=0.3)
DECIDED = ".escalation.decided"


class HeldDecision(FakeJetStream):
    """Stores every publish at once (as the server does) but holds the decision's PubAck
    until `release` is set; `sent` is the order the client was handed the publishes in."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        self.sent.append(subject)
        ack = await super().publish(subject, payload, timeout, stream, headers)
        if subject.endswith(DECIDED):
            await self.release.wait()
        return ack


class RefusedDecision(FakeJetStream):
    """Refuses the decision's publish `refusals` times (no stream leader answers), then
    stores it; every other publish is stored at once."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        if subject.endswith(DECIDED) and self.refusals > 0:
            self.refusals -= 1
            self.publishes += 1
            raise NoStreamResponseError
        return await super().publish(subject, payload, timeout, stream, headers)


def router(js: FakeJetStream) -> Router:
    log = JetStreamEventLog(js, publish_timeout=0.05, retry_for=0.3)  # type: ignore[arg-type]
    return Router(
        settings=SETTINGS,
        rules=load_rules(EXAMPLES),
        directory=load_directory(EXAMPLES),
        broker=None,  # type: ignore[arg-type]  # the event log is given
        event_log=log,
    )


async def deliver(r: Router, event: EncounterReported, **kw: Any) -> FakeMessage:
    msg = FakeMessage(serialize_event(event), subject_for(event), **kw)
    r.patterns = None  # pattern detection reads the log in the background: tested elsewhere
    await run_handler(
        msg,  # type: ignore[arg-type]
        event_log=r.event_log,
        consumer="router",
        expect=EncounterReported,
        handle=r.on_report,
    )
    return msg


def types(js: FakeJetStream) -> list[str]:
    return [e.type for e in js.events()]


def timers(js: FakeJetStream) -> list[str]:
    return [subject for stream, subject, _ in js.other_streams if stream == "DOORALERT_TIMERS"]


def incident(js: FakeJetStream) -> IncidentState:
    state = fold(js.events(), incident_id="inc-1")
    assert state is not None
    return state


async def test_the_requests_are_sent_before_the_decisions_puback_and_the_deadline_after() -> None:
    js = HeldDecision()
    r = router(js)
    handling = asyncio.create_task(deliver(r, encounter()))
    for _ in range(20):
        await asyncio.sleep(0)
    # The decision's PubAck is still out: the decision and all four requests were handed to
    # the client first (one flush, the decision first), and the deadline waits for it.
    assert [s.rsplit(".", 2)[-2] for s in js.sent] == ["escalation"] + ["notification"] * 4
    assert types(js) == ["escalation.decided"] + ["notification.requested"] * 4
    assert timers(js) == []
    assert not handling.done()
    js.release.set()
    msg = await handling
    assert msg.outcome == "ack"
    assert timers(js) == ["dooralert_timers.schedule.hamline.inc-1.1"]


async def test_a_decision_refused_once_is_stored_by_the_publish_retry_then_the_deadline() -> None:
    js = RefusedDecision(refusals=1)
    msg = await deliver(router(js), encounter())
    assert msg.outcome == "ack"
    # The requests were stored while the decision's publish waited to be retried: the log
    # holds them first, and the incident reads as a clean run's.
    assert types(js) == ["notification.requested"] * 4 + ["escalation.decided"]
    assert timers(js) == ["dooralert_timers.schedule.hamline.inc-1.1"]
    events = js.events()
    in_order = sorted(events, key=lambda e: e.type != "escalation.decided")  # decision first
    assert fold(events) == fold(in_order)
    assert incident(js).require_ack == ["law", "safety"]


async def test_a_decision_refused_for_longer_is_stored_when_the_report_comes_again() -> None:
    js = RefusedDecision(refusals=1000)
    event = encounter()
    first = await deliver(router(js), event)
    # Every retry of the decision failed: the report is retried later, never acked. The
    # requests are stored (the notifier can alert already), the deadline is not armed.
    assert (first.outcome, first.delay) == ("nack", 2.0)
    assert types(js) == ["notification.requested"] * 4
    assert timers(js) == []
    assert incident(js).require_ack == []
    js.refusals = 0
    again = await deliver(router(js), event, delivered=2)
    assert again.outcome == "ack"
    # The same ids: the requests stored already are dropped as duplicates.
    assert types(js) == ["notification.requested"] * 4 + ["escalation.decided"]
    assert timers(js) == ["dooralert_timers.schedule.hamline.inc-1.1"]
    state = incident(js)
    assert state.require_ack == ["law", "safety"] and state.ack_deadline is not None
    assert len(state.notifications) == 4
    [decided] = [e for e in js.events() if isinstance(e, EscalationDecided)]
    assert decided.id == derive_id(event.id, "escalation.decided")
