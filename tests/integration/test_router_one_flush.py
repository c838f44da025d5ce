"""A report's decision and requests in one flush, on a real nats-server: stored in the order
sent, deduplicated by their ids when the report comes again, and the deadline armed once the
decision is stored (also when the decision's publish was refused and stored later)."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, NotFoundError

from schemas.events import EncounterReported, serialize_event, subject_for
from services.domain.directory import load_directory
from services.domain.incident import fold
from services.eventlog import TIMER_SCHEDULE_PREFIX, TIMERS_STREAM, read_messages
from services.eventlog.consumer import run_handler
from services.eventlog.jetstream import JetStreamEventLog
from services.router.main import Router
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.service.fakes import FakeMessage
from tests.service.test_router_handler import encounter
from tests.support import EXAMPLES

TIMER = f"{TIMER_SCHEDULE_PREFIX}.hamline.inc-1.1"


class RefusingDecisions:
    """A real JetStream context whose client refuses the decision's publish `refusals` times
    before sending it (as while no stream leader answers)."""

    def __init__(self, js: JetStreamContext, refusals: int = 0) -> None:
        self.js, self.refusals = js, refusals

    async def publish(self, subject: str, payload: bytes = b"", **kw: Any) -> PubAck:
        if subject.endswith(".escalation.decided") and self.refusals > 0:
            self.refusals -= 1
            raise NoStreamResponseError
        return await self.js.publish(subject, payload, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)


async def deliver(js: RefusingDecisions, event: EncounterReported, **kw: Any) -> FakeMessage:
    router = Router(
        settings=Settings(),
        rules=load_rules(EXAMPLES),
        directory=load_directory(EXAMPLES),
        broker=None,  # type: ignore[arg-type]  # the event log is given
        event_log=JetStreamEventLog(js, publish_timeout=1.0, retry_for=0.3),  # type: ignore[arg-type]
    )
    router.patterns = None  # pattern detection is tested elsewhere
    msg = FakeMessage(serialize_event(event), subject_for(event), **kw)
    await run_handler(
        msg,  # type: ignore[arg-type]
        event_log=router.event_log,
        consumer="router",
        expect=EncounterReported,
        handle=router.on_report,
    )
    return msg


async def stored(js: JetStreamContext) -> list[tuple[int, str]]:
    msgs = await read_messages(js, "dooralert.hamline.inc-1.>")
    return [
        (m.seq, m.subject.rsplit(".", 2)[-2] + "." + m.subject.rsplit(".", 1)[-1]) for m in msgs
    ]


async def timer_armed(js: JetStreamContext) -> bool:
    try:
        await js.get_last_msg(TIMERS_STREAM, TIMER)
    except NotFoundError:
        return False
    return True


async def test_the_decision_is_stored_first_and_a_second_delivery_stores_nothing(
    js: JetStreamContext,
) -> None:
    event = encounter()
    msg = await deliver(RefusingDecisions(js), event)
    assert msg.outcome == "ack"
    log = await stored(js)
    assert [t for _, t in log] == ["escalation.decided"] + ["notification.requested"] * 4
    seqs = [s for s, _ in log]
    assert seqs == list(range(seqs[0], seqs[0] + 5))  # one after another, the decision first
    assert await timer_armed(js)
    again = await deliver(RefusingDecisions(js), event, delivered=2)
    assert again.outcome == "ack"
    assert await stored(js) == log


async def test_a_refused_decision_is_stored_when_the_report_comes_again_then_the_deadline(
    js: JetStreamContext,
) -> None:
    event = encounter()
    refusing = RefusingDecisions(js, refusals=1000)
    first = await deliver(refusing, event)
    assert first.outcome == "nack"
    assert [t for _, t in await stored(js)] == ["notification.requested"] * 4
    assert not await timer_armed(js)
    refusing.refusals = 0
    again = await deliver(refusing, event, delivered=2)
    assert again.outcome == "ack"
    # The server dropped the requests sent again (the same Nats-Msg-Id) and kept the decision.
    assert [t for _, t in await stored(js)] == ["notification.requested"] * 4 + [
        "escalation.decided"
    ]
    assert await timer_armed(js)
    msgs = await read_messages(js, "dooralert.hamline.inc-1.>")
    state = fold([m.event() for m in msgs], incident_id="inc-1")
    assert state is not None
    assert state.require_ack == ["law", "safety"] and state.ack_deadline is not None
    assert {n.status for n in state.notifications} == {"requested"}
    assert len(state.notifications) == 4
