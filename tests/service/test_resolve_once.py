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
    assert first[0] == second[0] and (first[1], second[1]) == (True, False)
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


async def test_each_round_is_resolved_and_reopened_once() -> None:
    log = FakeEventLog()
    reported = encounter_event(
        parse_report(report(), now=NOW), incident_id="inc-3", actor="key-hamline", now=NOW
    )
    await log.append(reported)

    async def state():  # type: ignore[no-untyped-def]
        return fold(await log.read_incident("inc-3"), incident_id="inc-3")

    first_clear = await record_follow_up(log, await state(), "key-hamline", {}, resolve=True)
    resolved = await state()
    # Two staff press "Agents are back" on the same resolved page: one reopening.
    one = await record_follow_up(log, resolved, "key-hamline", {}, resolve=False, reopen=True)
    two = await record_follow_up(log, resolved, "key-hamline", {}, resolve=False, reopen=True)
    assert one[0] == two[0]
    reopened = await state()
    assert reopened is not None and reopened.status == "open"
    # The next all-clear is a new one (not dropped as the first's duplicate), and once again.
    a = await record_follow_up(log, reopened, "key-hamline", {}, resolve=True)
    b = await record_follow_up(log, reopened, "key-hamline", {}, resolve=True)
    assert a[0] == b[0] != first_clear[0]
    assert [e.type for e in log.events()] == [
        "encounter.reported",
        "incident.resolved",
        "incident.reopened",
        "incident.resolved",
    ]
    final = await state()
    assert final is not None and final.status == "resolved" and final.reopen_count == 1
