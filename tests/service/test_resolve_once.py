"""An incident is resolved once: a double submit or two staff pressing All clear at the same time
record one all-clear, so everyone alerted gets one all-clear email."""

from __future__ import annotations

from datetime import UTC, datetime

from services.domain.incident import fold
from services.intake.incidents import record_follow_up
from services.intake.reports import encounter_event, parse_report
from tests.service.fakes import FakeEventLog
from tests.support import report

NOW = datetime.now(UTC)


async def test_two_all_clears_for_one_incident_record_one() -> None:
    log = FakeEventLog()
    reported = encounter_event(
        parse_report(report(), now=NOW), incident_id="inc-1", actor="key-hamline", now=NOW
    )
    await log.append(reported)
    state = fold(await log.read_incident("inc-1"), incident_id="inc-1")
    assert state is not None and state.status == "open"
    # Both requests saw the incident open (they raced), and both pass the decision.
    first = await record_follow_up(log, state, "key-hamline", {}, resolve=True)
    second = await record_follow_up(log, state, "key-hamline", {}, resolve=True)
    assert first == second
    assert [e.type for e in log.events()] == ["encounter.reported", "incident.resolved"]


async def test_two_updates_are_two_updates() -> None:
    log = FakeEventLog()
    reported = encounter_event(
        parse_report(report(), now=NOW), incident_id="inc-2", actor="key-hamline", now=NOW
    )
    await log.append(reported)
    state = fold(await log.read_incident("inc-2"), incident_id="inc-2")
    assert state is not None
    await record_follow_up(log, state, "key-hamline", {"entry": "left"}, resolve=False)
    await record_follow_up(log, state, "key-hamline", {"agent_count": 3}, resolve=False)
    assert [e.type for e in log.events()].count("encounter.updated") == 2
