"""Escalation, follow-ups, patterns and time windows as pure functions of the folded state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    EncounterReported,
    EscalationRaised,
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    IncidentResolved,
    NotificationFailed,
    NotificationFailedData,
    NotificationRequested,
    PatternDetected,
    SealedResolvedData,
)
from schemas.report import Agency, Document, Entry, Purpose, SignedByJudge
from services.domain.directory import load_directory
from services.domain.incident import fold
from services.intake.reports import encounter_event, parse_report
from services.router.decide import decide
from services.router.escalate import (
    Sighting,
    detect_pattern,
    on_deadline,
    on_followup,
    on_unreachable,
)
from services.router.rules import Rules, Window, load_rules
from tests.support import EXAMPLES, report

NOW = datetime(2025, 3, 3, 15, 30, tzinfo=UTC)  # a Monday, 09:30 in Chicago
RULES = load_rules(EXAMPLES)
DIRECTORY = load_directory(EXAMPLES)


def reported(
    incident_id: str = "inc-1", school: str = "hamline", at: datetime = NOW, **overrides: Any
) -> EncounterReported:
    r = parse_report(report(school_id=school, **overrides), now=at)
    return encounter_event(r, incident_id=incident_id, actor="k", now=at)


def base_events(**overrides: Any) -> list[Any]:
    event = reported(**overrides)
    return [event, *decide(event, rules=RULES, directory=DIRECTORY, now=NOW)]


def envelope(**kw: Any) -> dict[str, Any]:
    return {
        "source": "intake",
        "incident_id": "inc-1",
        "school_id": "hamline",
        "occurred_at": NOW,
        "recorded_at": NOW,
        "correlation_id": "inc-1",
        "actor": "x",
        **kw,
    }


def ack(role: str, contact: str) -> IncidentAcknowledged:
    return IncidentAcknowledged(
        id=f"ack-{role}-{contact}",
        data=IncidentAcknowledgedData(role=role, contact_id=contact, via="link"),
        **envelope(),
    )


def test_missing_acks_escalate_tier_one_to_the_backups_of_who_has_not_acknowledged() -> None:
    events, next_deadline = on_deadline(
        fold(base_events()), tier=1, rules=RULES, directory=DIRECTORY, now=NOW
    )
    raised = events[0]
    assert isinstance(raised, EscalationRaised)
    assert raised.data.missing_roles == ["law", "safety"]
    # law-dept's backup (law-counsel) already holds the law role; law-counsel's and the
    # safety office's backup is the chief, who gets one alert standing in for both roles.
    assert [(r.role, r.contact_id) for r in raised.data.recipients] == [
        ("law+safety", "chief-of-schools")
    ]
    assert all(
        isinstance(e, NotificationRequested) and e.data.kind == "escalation" for e in events[1:]
    )
    assert next_deadline == NOW + timedelta(minutes=2)


def test_all_required_roles_acknowledged_means_nothing_happens() -> None:
    state = fold([*base_events(), ack("law", "law-dept"), ack("safety", "safety-office")])
    assert on_deadline(state, tier=1, rules=RULES, directory=DIRECTORY, now=NOW) == ([], None)


def test_an_escalation_recipient_acknowledging_covers_the_roles_it_stood_in_for() -> None:
    state = fold([*base_events(), ack("law+safety", "chief-of-schools")])
    assert state is not None and state.missing_acks() == []


def test_resolved_incidents_never_escalate() -> None:
    resolved = IncidentResolved(id="r", data=SealedResolvedData(), **envelope())
    state = fold([*base_events(), resolved])
    assert on_deadline(state, tier=1, rules=RULES, directory=DIRECTORY, now=NOW) == ([], None)


def test_a_tier_is_raised_once_and_only_the_next_timer_is_rearmed() -> None:
    first, deadline = on_deadline(
        fold(base_events()), tier=1, rules=RULES, directory=DIRECTORY, now=NOW
    )
    later = NOW + timedelta(seconds=5)
    again, rearm = on_deadline(
        fold([*base_events(), *first]), tier=1, rules=RULES, directory=DIRECTORY, now=later
    )
    assert again == [] and rearm == deadline


def test_tiers_then_repeats_then_stop() -> None:
    policy = RULES.escalation
    assert policy.tier(2) is not None and policy.tier(2)[0].notify == ["leadership"]
    assert policy.tier(3) is not None  # repeat_every: leadership again
    assert policy.tier(2 + policy.max_repeats + 1) is None


def test_an_unreachable_contact_is_escalated_to_its_backups_once() -> None:
    events = base_events()
    state = fold(events)
    assert state is not None
    safety = next(n for n in state.notifications if n.contact_id == "safety-office")
    failed = NotificationFailed(
        id="f",
        data=NotificationFailedData(
            notification_id=safety.notification_id,
            role="safety",
            contact_id="safety-office",
            channel="email",
            attempt=1,
            permanent=True,
            reason="550",
            contact_unreachable=True,
        ),
        **envelope(source="notifier"),
    )
    out = on_unreachable(fold([*events, failed]), failed, directory=DIRECTORY, now=NOW)
    assert [r.contact_id for r in out[0].data.recipients] == ["chief-of-schools"]
    assert on_unreachable(fold([*events, failed, *out]), failed, directory=DIRECTORY, now=NOW) == []


def test_follow_ups_reach_each_contact_once_and_never_re_alert() -> None:
    resolved = IncidentResolved(id="r", data=SealedResolvedData(), **envelope())
    events = base_events()
    out = on_followup(fold(events), resolved, now=NOW)
    assert {e.data.contact_id for e in out} == {
        "law-dept",
        "law-counsel",
        "safety-office",
        "principal-hamline",
    }
    assert all(e.data.kind == "resolved" for e in out)


def test_pattern_fires_once_per_window_across_distinct_schools() -> None:
    rules = Rules.model_validate(
        yaml.safe_load("""
version: 1
routes: [{name: all, match: {}, notify: [law]}]
patterns: [{name: multi, min_encounters: 2, within: 60m, notify: [leadership]}]
""")
    )
    pattern = rules.patterns[0]
    a = Sighting("i1", "hamline", NOW - timedelta(minutes=50))
    b = Sighting("i2", "hamline", NOW - timedelta(minutes=10))
    assert detect_pattern(pattern, [a, b], [], directory=DIRECTORY, now=NOW) == []
    c = Sighting("i3", "lincoln-park", NOW)
    found = detect_pattern(pattern, [a, b, c], [], directory=DIRECTORY, now=NOW)
    detected = found[0]
    assert isinstance(detected, PatternDetected)
    assert detected.data.school_ids == ["hamline", "lincoln-park"]
    assert (
        detect_pattern(
            pattern, [a, b, c], [detected], directory=DIRECTORY, now=NOW + timedelta(minutes=5)
        )
        == []
    )
    old = Sighting("i0", "lincoln-park", NOW - timedelta(minutes=61))
    assert detect_pattern(pattern, [old, b], [], directory=DIRECTORY, now=NOW) == []


def test_time_windows_use_the_rules_timezone_and_wrap_midnight() -> None:
    day = Window.model_validate({"from": "07:00", "to": "16:00", "days": ["mon", "tue"]})
    night = Window.model_validate({"from": "18:00", "to": "06:00"})
    chicago = RULES.tz
    monday_morning = datetime(2025, 3, 3, 9, 30, tzinfo=chicago)
    assert day.contains(monday_morning) and not night.contains(monday_morning)
    assert not day.contains(datetime(2025, 3, 5, 9, 30, tzinfo=chicago))  # a Wednesday
    assert night.contains(datetime(2025, 3, 3, 23, 0, tzinfo=chicago))
    assert night.contains(datetime(2025, 3, 4, 5, 59, tzinfo=chicago))


def test_a_route_with_a_window_matches_by_the_report_time() -> None:
    rules = Rules.model_validate(
        yaml.safe_load("""
version: 1
timezone: America/Chicago
routes:
  - {name: school-hours, match: {}, when: {from: "07:00", to: "16:00"}, notify: [principal]}
  - {name: after-hours, match: {}, notify: [leadership]}
""")
    )
    morning = reported(at=datetime(2025, 3, 3, 15, 0, tzinfo=UTC)).data  # 09:00 Chicago
    evening = reported(at=datetime(2025, 3, 4, 2, 0, tzinfo=UTC)).data  # 20:00 Chicago
    assert [r.name for r in rules.matching(morning)] == ["school-hours"]
    assert [r.name for r in rules.matching(evening)] == ["after-hours"]


reports = st.fixed_dictionaries(
    {
        "agency_stated": st.sampled_from([a.value for a in Agency]),
        "document": st.sampled_from([d.value for d in Document]),
        "signed_by_judge": st.sampled_from([s.value for s in SignedByJudge]),
        "purpose": st.sampled_from([p.value for p in Purpose]),
        "entry": st.sampled_from([e.value for e in Entry]),
        "agent_count": st.integers(1, 50),
        "credentials_shown": st.booleans(),
        "school": st.sampled_from(["hamline", "lincoln-park"]),
    }
)


@settings(max_examples=150, deadline=None)
@given(reports)
def test_decide_is_deterministic_and_first_match_wins(fields: dict[str, Any]) -> None:
    school = fields.pop("school")
    event = reported(school=school, **fields)
    once = decide(event, rules=RULES, directory=DIRECTORY, now=NOW)
    twice = decide(event, rules=RULES, directory=DIRECTORY, now=NOW)
    assert once == twice
    routes = once[0].data.routes
    # Routes fire in file order; after the first one that does not continue, none follow.
    expected = []
    for route in RULES.routes:
        if route.matches(event.data, RULES.tz):
            expected.append(route.name)
            if not route.continue_:
                break
    assert routes == expected and routes  # the example ends with a catch-all
    ids = [e.data.notification_id for e in once[1:]]
    assert len(ids) == len(set(ids))
    assert {"law", "safety"} <= set(once[0].data.notify_roles)
