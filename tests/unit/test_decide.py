"""The router's decision: who is told about an encounter, how urgently, under which ids."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from schemas.events import (
    EncounterReported,
    EscalationDecided,
    NotificationRequested,
    parse_event,
    serialize_event,
)
from services.domain.directory import Directory, load_directory
from services.intake.reports import encounter_event, parse_report
from services.router.decide import decide
from services.router.rules import Rules, load_rules
from tests.support import EXAMPLES, report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
RULES = load_rules(EXAMPLES)
DIRECTORY = load_directory(EXAMPLES)


def reported(incident_id: str = "inc-1", **overrides: Any) -> EncounterReported:
    r = parse_report(report(**overrides), now=NOW)
    return encounter_event(r, incident_id=incident_id, actor="key-hamline", now=NOW)


def run(
    event: EncounterReported,
    *,
    rules: Rules = RULES,
    directory: Directory = DIRECTORY,
    now: datetime = NOW,
) -> tuple[EscalationDecided, list[NotificationRequested]]:
    out = decide(event, rules=rules, directory=directory, now=now)
    head, *rest = out
    assert isinstance(head, EscalationDecided)
    assert all(isinstance(e, NotificationRequested) for e in rest)
    return head, rest  # type: ignore[return-value]


def who(requests: list[NotificationRequested]) -> list[tuple[str, str]]:
    return [(r.data.role, r.data.contact_id) for r in requests]


def directory_with(**changes: Any) -> Directory:
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    raw.update(changes)
    return Directory.model_validate(raw)


def test_a_door_encounter_alerts_law_safety_and_the_principal_once_each() -> None:
    decided, requests = run(reported())
    assert decided.data.routes == ["any-encounter"]
    assert decided.data.severity == "high"
    assert decided.data.notify_roles == ["law", "safety", "principal"]
    assert decided.data.require_ack == ["law", "safety"]
    assert decided.data.ack_deadline == NOW + timedelta(minutes=2)
    assert who(requests) == [
        ("law", "law-dept"),
        ("law", "law-counsel"),
        ("safety", "safety-office"),
        ("principal", "principal-hamline"),
    ]
    assert {r.data.channel for r in requests} == {"email"}
    assert decided.data.unresolved_roles == []


def test_the_decision_lists_exactly_the_recipients_that_are_requested() -> None:
    decided, requests = run(reported())
    assert [(r.notification_id, r.role, r.contact_id) for r in decided.data.recipients] == [
        (q.data.notification_id, q.data.role, q.data.contact_id) for q in requests
    ]


def test_decided_events_belong_to_the_incident_and_point_at_the_report() -> None:
    event = reported()
    for e in decide(event, rules=RULES, directory=DIRECTORY, now=NOW):
        assert (e.incident_id, e.school_id, e.source) == ("inc-1", "hamline", "router")
        assert e.correlation_id == event.correlation_id
        assert e.causation_id == event.id


def test_decided_events_name_contacts_by_id_never_by_address() -> None:
    payload = b"".join(
        serialize_event(e) for e in decide(reported(), rules=RULES, directory=DIRECTORY, now=NOW)
    )
    assert b"@" not in payload


def test_decided_events_survive_a_round_trip_through_the_log() -> None:
    for e in decide(reported(), rules=RULES, directory=DIRECTORY, now=NOW):
        assert parse_event(serialize_event(e)) == e


def test_deciding_the_same_report_twice_gives_the_same_ids() -> None:
    event = reported()
    first = decide(event, rules=RULES, directory=DIRECTORY, now=NOW)
    later = decide(event, rules=RULES, directory=DIRECTORY, now=NOW + timedelta(seconds=30))
    assert [e.id for e in first] == [e.id for e in later]
    assert [getattr(e.data, "notification_id", None) for e in first] == [
        getattr(e.data, "notification_id", None) for e in later
    ]


def test_different_incidents_get_different_ids() -> None:
    a = decide(reported("inc-a"), rules=RULES, directory=DIRECTORY, now=NOW)
    b = decide(reported("inc-b"), rules=RULES, directory=DIRECTORY, now=NOW)
    assert not {e.id for e in a} & {e.id for e in b}
    assert len({e.id for e in a}) == len(a)


def test_entry_without_consent_is_critical_and_tells_leadership_within_a_minute() -> None:
    decided, requests = run(reported(entry="entered_without_consent"))
    assert decided.data.routes == ["entered-without-consent"]
    assert decided.data.severity == "critical"
    assert ("leadership", "chief-of-schools") in who(requests)
    assert decided.data.ack_deadline == NOW + timedelta(minutes=1)
    assert {r.data.severity for r in requests} == {"critical"}


def test_continued_routes_take_the_highest_severity_and_the_earliest_deadline() -> None:
    decided, requests = run(reported(document="judicial_warrant", purpose="student"))
    assert decided.data.routes == ["judicial-document", "student-sought"]
    assert decided.data.severity == "critical"  # critical (judicial) beats high (student)
    assert decided.data.ack_deadline == NOW + timedelta(minutes=1)  # 1m beats 2m
    assert decided.data.notify_roles == ["law", "safety", "principal", "family_liaison"]
    assert ("family_liaison", "liaison-hamline") in who(requests)
    assert {r.data.routes == decided.data.routes for r in requests} == {True}


def test_severity_is_the_maximum_whatever_the_route_order() -> None:
    rules = Rules.model_validate(
        yaml.safe_load(
            textwrap.dedent("""
        version: 1
        routes:
          - name: low
            match: {}
            notify: [law]
            severity: info
            continue: true
          - name: top
            match: {purpose: student}
            notify: [safety]
            require_ack: [safety]
            ack_within: 5m
            severity: critical
            continue: true
          - name: mid
            match: {}
            notify: [law]
            require_ack: [law]
            ack_within: 30s
            severity: high
    """)
        )
    )
    decided, _ = run(reported(purpose="student"), rules=rules)
    assert decided.data.severity == "critical"
    assert decided.data.ack_deadline == NOW + timedelta(seconds=30)
    assert decided.data.require_ack == ["safety", "law"]


def test_a_report_no_route_matches_still_alerts_law_and_safety() -> None:
    rules = Rules.model_validate(
        yaml.safe_load(
            textwrap.dedent("""
        version: 1
        routes:
          - name: student
            match: {purpose: student}
            notify: [principal]
    """)
        )
    )
    decided, requests = run(reported(purpose="records"), rules=rules)
    assert decided.data.routes == []
    assert decided.data.notify_roles == ["law", "safety"]
    assert decided.data.severity == "high"
    assert decided.data.ack_deadline is None
    assert who(requests) == [
        ("law", "law-dept"),
        ("law", "law-counsel"),
        ("safety", "safety-office"),
    ]


def test_a_contact_in_two_roles_gets_one_alert_under_the_first_role() -> None:
    directory = directory_with(
        roles={
            "law": ["law-dept", "principal-hamline"],
            "safety": ["safety-office", "law-dept"],
            "leadership": ["chief-of-schools"],
        }
    )
    decided, requests = run(reported(), directory=directory)
    assert who(requests) == [
        ("law", "law-dept"),
        ("law", "principal-hamline"),
        ("safety", "safety-office"),
    ]
    ids = [r.data.notification_id for r in requests]
    assert len(ids) == len(set(ids))
    assert len(decided.data.recipients) == 3


def test_roles_without_contacts_are_reported_as_unresolved() -> None:
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    raw["schools"][0]["roles"] = {"family_liaison": ["liaison-hamline"]}  # no principal
    decided, requests = run(reported(), directory=Directory.model_validate(raw))
    assert decided.data.unresolved_roles == ["principal"]
    assert "principal" not in {r.data.role for r in requests}


def test_a_school_missing_from_the_directory_still_alerts_district_roles() -> None:
    decided, requests = run(reported(school_id="unlisted-school"))
    assert decided.data.unresolved_roles == ["principal"]
    assert {r.data.role for r in requests} == {"law", "safety"}


def test_a_webhook_only_contact_is_alerted_by_webhook_and_unreachable_roles_are_reported() -> None:
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    for c in raw["contacts"]:
        if c["id"] == "principal-hamline":
            c["channels"] = [{"type": "webhook", "url": "https://hooks.example/principal"}]
    directory = Directory.model_validate(raw)
    _, requests = run(reported(), directory=directory)
    assert ("principal-hamline", "webhook") in {
        (r.data.contact_id, r.data.channel) for r in requests
    }
    # A deployment that sends email only cannot reach that principal, and says so.
    out = decide(
        reported(), rules=RULES, directory=directory, now=NOW, channels=frozenset({"email"})
    )
    assert out[0].data.unresolved_roles == ["principal"]  # type: ignore[attr-defined]
    assert "principal-hamline" not in {e.data.contact_id for e in out[1:]}  # type: ignore[attr-defined]


def test_one_request_per_contact_on_its_first_usable_channel() -> None:
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    for c in raw["contacts"]:
        if c["id"] == "safety-office":
            c["channels"].insert(0, {"type": "webhook", "url": "https://hooks.example/safety"})
            c["channels"].append({"type": "email", "address": "second@district.example"})
    directory = Directory.model_validate(raw)
    for channels, expected in (
        (frozenset({"email"}), "email"),
        (frozenset({"email", "webhook"}), "webhook"),
    ):
        out = decide(reported(), rules=RULES, directory=directory, now=NOW, channels=channels)
        safety = [
            (e.data.contact_id, e.data.channel)
            for e in out[1:]
            if isinstance(e, NotificationRequested) and e.data.role == "safety"
        ]
        assert safety == [("safety-office", expected)]


@pytest.mark.parametrize("school", ["hamline", "lincoln-park"])
def test_the_principal_alerted_is_the_reporting_schools(school: str) -> None:
    _, requests = run(reported(school_id=school))
    principals = [c for role, c in who(requests) if role == "principal"]
    expected = {"hamline": "principal-hamline", "lincoln-park": "principal-lincoln"}[school]
    assert principals == [expected]
