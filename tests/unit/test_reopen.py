"""Withdrawing an all-clear (`incident.reopened`) as pure functions: the fold opens the incident
again and counts rounds, each round's all-clear and reopening get their own derived id, the
intake's decision refuses an open incident, the router tells everyone alerted and re-arms the
escalation deadline for the roles still to confirm, and the notifier's email says "agents back"
with an acknowledgement link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.envelope import originating
from schemas.events import (
    EncounterReported,
    Event,
    IncidentReopened,
    IncidentResolved,
    NotificationRequested,
    SealedReopenedData,
    SealedResolvedData,
    derive_id,
    parse_event,
    serialize_event,
)
from services.domain.directory import load_directory
from services.domain.incident import IncidentState, fold
from services.domain.notes import open_notes
from services.domain.sealing import new_key, seal
from services.intake.domain.followups import decide_reopen
from services.intake.domain.refusals import Refused
from services.intake.incident_pages import needs_confirming
from services.intake.reports import encounter_event, parse_report
from services.notifier.plan import EmailDelivery, Found, PlanSettings, plan_delivery
from services.router import deadlines
from services.router.decide import decide
from services.router.escalate import on_deadline, on_followup, reopened_deadline
from services.router.rules import load_rules
from tests.fixtures.notifier_support import encounter, request, test_directory
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES, TEST_KEYS, report

T0 = datetime(2025, 3, 3, 15, 30, tzinfo=UTC)  # a Monday, 09:30 in Chicago
RULES = load_rules(EXAMPLES)
DIRECTORY = load_directory(EXAMPLES)
KEY = new_key("inc-1", now=T0)


def reported() -> EncounterReported:
    return encounter_event(parse_report(report(), now=T0), incident_id="inc-1", actor="k", now=T0)


def opened_incident() -> list[Event]:
    first = reported()
    return [first, *decide(first, rules=RULES, directory=DIRECTORY, now=T0)]


def state_of(events: list[Event]) -> IncidentState:
    state = fold(events)
    assert state is not None
    return state


def resolved(state: IncidentState, at: datetime) -> IncidentResolved:
    return originating(
        IncidentResolved,
        SealedResolvedData(),
        id=state.round_id("incident.resolved"),
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        now=at,
        actor="k",
    )


def reopen(state: IncidentState, at: datetime, raw: Any = None) -> IncidentReopened:
    def seal_note(text: str, *, event_id: str, field: str) -> Any:
        return seal(text, KEY, incident_id="inc-1", event_id=event_id, field=field)

    event = decide_reopen(
        state,
        raw,
        actor="k",
        now=at,
        event_id=state.round_id("incident.reopened"),
        seal=seal_note,
    )
    assert isinstance(event, IncidentReopened), event
    return event


def test_reopening_opens_the_incident_again_and_each_round_has_its_own_ids() -> None:
    events = opened_incident()
    first = state_of(events)
    # Round 0's all-clear keeps the id it had before reopening existed.
    assert first.round_id("incident.resolved") == derive_id("inc-1", "incident.resolved")
    events.append(resolved(first, T0 + timedelta(minutes=1)))
    state = state_of(events)
    assert state.status == "resolved" and state.missing_acks() == []
    events.append(reopen(state, T0 + timedelta(minutes=2)))
    state = state_of(events)
    assert state.status == "open" and state.resolved_at is None
    assert state.reopen_count == 1 and state.reopened_at == T0 + timedelta(minutes=2)
    assert state.missing_acks() == ["law", "safety"]
    second = state.round_id("incident.resolved")
    assert second == derive_id("inc-1", "incident.resolved", "1") != events[-2].id
    events.append(resolved(state, T0 + timedelta(minutes=3)))
    state = state_of(events)
    assert state.status == "resolved" and state.resolved_at == T0 + timedelta(minutes=3)
    assert state.round_id("incident.reopened") == derive_id("inc-1", "incident.reopened", "1")


def test_a_reopening_of_an_open_incident_changes_nothing_in_the_fold() -> None:
    events = opened_incident()
    state = state_of(events)
    stray = IncidentReopened.model_validate(
        {**reopen(state_of([*events, resolved(state, T0)]), T0).model_dump(), "id": "x"}
    )
    after = state_of([*events, stray])
    assert after.status == "open" and after.reopen_count == 0 and after.reopened_at is None


def test_the_intake_refuses_to_reopen_an_open_incident_or_personal_data() -> None:
    state = state_of(opened_incident())
    refused = decide_reopen(state, {}, actor="k", now=T0, event_id="e")
    assert isinstance(refused, Refused) and refused.kind == "open" and refused.status == 409
    done = state_of([*opened_incident(), resolved(state, T0)])
    bad = decide_reopen(done, {"student_name": "x"}, actor="k", now=T0, event_id="e")
    assert isinstance(bad, Refused) and bad.status == 422
    unknown = decide_reopen(done, {"reason": "x"}, actor="k", now=T0, event_id="e")
    assert isinstance(unknown, Refused) and unknown.fields[0]["field"] == "reason"


def test_a_reopening_note_is_stored_sealed_and_opens_with_the_incident_key() -> None:
    done = state_of([*opened_incident(), resolved(state_of(opened_incident()), T0)])
    event = reopen(done, T0, {"note": "They came back with a van."})
    stored = serialize_event(event)
    assert b"came back" not in stored
    again = parse_event(stored)
    assert isinstance(again.data, SealedReopenedData)
    assert open_notes(again, KEY, now=T0, retention=timedelta(days=1)) == (
        "They came back with a van."
    )


def test_everyone_alerted_hears_the_agents_are_back_once_and_only_they() -> None:
    events = opened_incident()
    clear = resolved(state_of(events), T0)
    events += [clear, *on_followup(state_of([*events, clear]), clear, now=T0)]
    state = state_of(events)
    back = reopen(state, T0 + timedelta(minutes=1))
    requests = on_followup(state_of([*events, back]), back, now=T0)
    assert requests and all(isinstance(r, NotificationRequested) for r in requests)
    data = [r.data for r in requests if isinstance(r, NotificationRequested)]
    alerted = {(n.contact_id, n.channel) for n in state.notifications if n.kind == "alert"}
    assert {(d.contact_id, d.channel) for d in data} == alerted
    assert {d.kind for d in data} == {"reopened"} and {d.cause_id for d in data} == {back.id}
    # The all-clear's requests did not make anyone "alerted" twice; a new round, new ids.
    assert len(data) == len(alerted)
    assert not {d.notification_id for d in data} & {n.notification_id for n in state.notifications}


def test_the_deadline_is_armed_again_for_the_roles_still_to_confirm() -> None:
    from tests.unit.test_escalate import ack

    events = [*opened_incident(), ack("law", "law-dept")]
    state = state_of(events)
    events.append(resolved(state, T0 + timedelta(seconds=30)))
    # The first deadline fires while resolved: nothing, and the timer chain ends.
    fired, nxt = on_deadline(
        state_of(events), tier=1, rules=RULES, directory=DIRECTORY, now=T0 + timedelta(minutes=2)
    )
    assert (fired, nxt) == ([], None)
    events.append(reopen(state_of(events), T0 + timedelta(minutes=5)))
    now = T0 + timedelta(minutes=5)
    window = state_of(events).ack_deadline - T0  # type: ignore[operator]
    assert reopened_deadline(state_of(events), rules=RULES, now=now) == (1, now + window)
    # When it fires, only the role nobody confirmed is escalated (law's ack still counts).
    raised, _ = on_deadline(
        state_of(events), tier=1, rules=RULES, directory=DIRECTORY, now=now + window
    )
    assert raised and raised[0].data.missing_roles == ["safety"]  # type: ignore[attr-defined]
    # Escalation that had reached tier 1 resumes at tier 2, after tier 1's time.
    events += raised
    events.append(resolved(state_of(events), now + window))
    events.append(reopen(state_of(events), now + 2 * window))
    tier, at = reopened_deadline(state_of(events), rules=RULES, now=now) or (0, None)
    assert (tier, at) == (2, now + RULES.escalation.tiers[0].timeout)
    # Everyone required confirmed: nothing to arm; resolved: nothing either.
    done = [*events, ack("safety", "safety-office")]
    assert reopened_deadline(state_of(done), rules=RULES, now=now) is None
    closed = [*done, resolved(state_of(done), now)]
    assert reopened_deadline(state_of(closed), rules=RULES, now=now) is None


async def test_a_reopened_rounds_timer_is_a_new_timer_not_a_duplicate() -> None:
    log = FakeEventLog()
    for round_ in (0, 0, 1):
        deadline = deadlines.Deadline("hamline", "inc-1", 1, T0, round=round_)
        await deadlines.schedule(log, deadline, now=T0)
    (s0, *_, id0), (s1, *_, id1), (s2, _, _, t2, id2) = log.schedules
    assert s0 == s1 and id0 == id1  # the same tier twice in a round: one timer
    assert id2 != id0 and s2 != s0 and t2.endswith(".r1")
    assert id0 == derive_id("inc-1", "timer", "1")  # round 0 as before


def test_the_agents_back_email_says_so_asks_to_confirm_and_shows_the_report_now(
    tmp_path: Path,
) -> None:
    directory = test_directory(tmp_path, "http://hooks.example")
    settings = PlanSettings(
        base_url="https://dooralert.example", sender="d <a@b.invalid>", ack_link_days=7,
        keys=TEST_KEYS,
    )  # fmt: skip
    state = fold([encounter("inc-1", location="Side gate")])
    for contact, prefix in (("law-dept", "AGENTS BACK: "), ("liaison-hamline", "AGENTES DE")):
        req = request("inc-1", contact, kind="reopened")
        found = Found(report=encounter("inc-1"), state=state)
        delivery = plan_delivery(req, found, directory=directory, settings=settings, now=T0)
        assert isinstance(delivery, EmailDelivery)
        assert str(delivery.message["Subject"]).startswith(prefix)
        body = delivery.message.get_body(("plain",))
        assert body is not None
        text = str(body.get_content())
        assert "https://dooralert.example/ack/" in text and "Side gate" in text


def test_only_the_step_that_applies_is_asked_to_confirm() -> None:
    state = state_of(opened_incident())
    done = state_of([*opened_incident(), resolved(state, T0)])
    assert needs_confirming({"action": "resolve"}, state)
    assert needs_confirming({"action": "agents_back"}, state)
    assert not needs_confirming({"action": "reopen"}, state)  # refused when recorded
    assert needs_confirming({"action": "reopen"}, done)
    assert not needs_confirming({"action": "resolve"}, done)
    assert not needs_confirming({"action": "reopen", "confirm": "yes"}, done)
    assert not needs_confirming({"action": "document"}, state)


def test_the_after_action_report_lists_each_all_clear_and_reopening_in_order() -> None:
    from services.audit.report import build_report, render_markdown

    events = opened_incident()
    first = resolved(state_of(events), T0 + timedelta(minutes=1))
    events.append(first)
    back = reopen(state_of(events), T0 + timedelta(minutes=2), {"note": "They came back."})
    events.append(back)
    events += [resolved(state_of(events), T0 + timedelta(minutes=3)), first]  # and a stray copy
    report_ = build_report(list(enumerate(events, 1)), now=T0, notes_key=KEY)
    assert [f.kind for f in report_.follow_ups] == ["resolved", "reopened", "resolved"]
    assert report_.follow_ups[1].note == "They came back."
    text = render_markdown(report_)
    assert text.index("Resolved (all clear)") < text.index("Reopened (all clear withdrawn)")


async def test_a_reopened_incident_comes_back_on_the_district_board() -> None:
    from services.intake.board_feed import BoardFeed

    log = FakeEventLog()
    feed = BoardFeed(lambda: log, window=timedelta(days=7), poll_seconds=60, clock=lambda: T0)
    events = opened_incident()
    for event in events:
        await log.append(event)
    await feed.refresh()
    assert [r.incident_id for r in feed.rows()] == ["inc-1"]
    clear = resolved(state_of(events), T0)
    await log.append(clear)
    await feed.refresh()
    assert feed.rows() == []
    await log.append(reopen(state_of([*events, clear]), T0))
    assert await feed.refresh()
    assert [r.incident_id for r in feed.rows()] == ["inc-1"]
