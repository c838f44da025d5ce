"""Stored v1 events stay readable, and older versions are lifted on read, never rewritten.

tests/fixtures/events-v1/events.jsonl holds one event of every type, byte for byte as the
services stored them on a real nats-server (an incident at hamline with a transient failure,
an ack, an escalation, an update, a dead letter, the all-clear and a revoked status link
(appended when `links.revoked` was added), plus the pattern alert it
raised with a lincoln-park incident). It is data: never regenerate it to make this test pass.
A change that cannot read it breaks every log already written.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    CURRENT_VERSIONS,
    EVENT_MODELS,
    UPCASTERS,
    EncounterReported,
    EncounterUpdated,
    Event,
    EventDecodeError,
    IncidentResolved,
    MessageDeadLettered,
    NotificationFailed,
    PatternDetected,
    parse_event,
)
from services.domain.incident import fold
from services.domain.notes import reveal

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "events-v1" / "events.jsonl"
HAMLINE = "01a229e8-e578-71b0-b4fc-eec89702a155"
LAW_NOTIFICATION = "46f6fd6e-0ce3-5ae0-90a1-f3c039625b25"


def stored() -> list[bytes]:
    return FIXTURE.read_bytes().splitlines()


def events() -> list[Event]:
    return [parse_event(line) for line in stored()]


def by_type() -> dict[str, Event]:
    return {e.type: e for e in events()}


# Types added after the fixture was recorded (they have no v1 writer to be faithful to).
LATER_TYPES = {"notes.forgotten", "incident.reopened"}


def test_the_fixture_holds_one_stored_v1_event_of_every_type() -> None:
    raw = [json.loads(line) for line in stored()]
    assert sorted(r["type"] for r in raw) == sorted(set(EVENT_MODELS) - LATER_TYPES)
    assert {r["schema_version"] for r in raw} == {1}


def test_every_stored_v1_event_parses_into_its_model_at_todays_version() -> None:
    for line, event in zip(stored(), events(), strict=True):
        assert type(event) is EVENT_MODELS[json.loads(line)["type"]]
        assert event.schema_version == CURRENT_VERSIONS[event.type]


def test_v1_clear_notes_are_read_as_notes_v1_and_the_stored_bytes_keep_them() -> None:
    t = by_type()
    reported, updated, resolved = (
        t["encounter.reported"],
        t["encounter.updated"],
        t["incident.resolved"],
    )
    assert isinstance(reported, EncounterReported) and reported.schema_version == 2
    raw = json.loads(next(line for line in stored() if b'"encounter.reported"' in line))
    assert reported.data.notes_v1 == raw["data"]["notes"] and reported.data.notes_sealed is None
    assert isinstance(updated, EncounterUpdated)
    assert updated.data.notes_v1 == "Agents left at 10:42 without entering."
    assert isinstance(resolved, IncidentResolved) and resolved.data.note_sealed is None
    # v1 notes were never sealed: readers still show them (they cannot be forgotten).
    state = fold(e for e in events() if e.incident_id == HAMLINE)
    assert state is not None
    shown = reveal(state, events(), None, now=datetime.now(UTC), retention=timedelta(days=1))
    # the report as it stands: the update's notes replaced the report's (as v1 showed it)
    assert shown.report is not None
    assert shown.report.notes == "Agents left at 10:42 without entering."
    assert shown.updates[0]["notes"] == "Agents left at 10:42 without entering."
    assert shown.notes_removed_on is None


def test_folding_the_stored_incident_gives_the_state_the_services_saw() -> None:
    incidents: dict[str, list[Event]] = defaultdict(list)
    for e in events():
        incidents[e.incident_id].append(e)
    state = fold(incidents[HAMLINE])
    assert state is not None and state.school_id == "hamline"
    assert state.status == "resolved" and state.resolved_at is not None
    assert state.report is not None
    assert state.report.location == "Main office, front entrance"
    assert state.report.agency_stated == "ice" and state.report.agent_count == 2
    assert state.report.entry == "left"  # the update applied over the report
    assert state.updates[0]["notes_v1"] == "Agents left at 10:42 without entering."
    assert (state.severity, state.routes, state.require_ack) == (
        "high",
        ["any-encounter"],
        ["law", "safety"],
    )
    law = state.notification(LAW_NOTIFICATION)
    assert law is not None and (law.role, law.contact_id, law.channel) == (
        "law",
        "law-dept",
        "email",
    )
    assert (law.status, law.attempts) == ("sent", 2)  # a transient failure, then delivered
    [ack] = state.acknowledgements
    assert (ack.role, ack.contact_id, ack.via) == ("law", "law-dept", "api")
    [esc] = state.escalations
    assert (esc.tier, esc.reason, esc.missing_roles, esc.contact_ids) == (
        1,
        "deadline",
        ["safety"],
        ["chief-of-schools"],
    )
    [revoked] = state.links_revoked  # `dooralert links revoke --contact hook-only`
    assert revoked.recipient == "hook-only" and revoked.at.utcoffset() is not None
    assert state.event_count == 11

    [pattern_incident] = [i for i in incidents if i != HAMLINE]
    other = fold(incidents[pattern_incident])
    assert other is not None and other.school_id == "district" and other.report is None


def test_payload_fields_of_the_stored_events_keep_their_meaning() -> None:
    t = by_type()
    reported = t["encounter.reported"]
    assert isinstance(reported, EncounterReported)
    assert reported.data.document == "administrative_warrant"
    assert reported.data.credentials_shown is True and reported.data.purpose == "student"
    assert reported.occurred_at.utcoffset() is not None
    failed = t["notification.failed"]
    assert isinstance(failed, NotificationFailed)
    assert (failed.data.permanent, failed.data.attempt, failed.data.contact_unreachable) == (
        False,
        1,
        False,
    )
    assert failed.data.reason.startswith("451")
    pattern = t["pattern.detected"]
    assert isinstance(pattern, PatternDetected)
    assert pattern.data.school_ids == ["hamline", "lincoln-park"]
    assert HAMLINE in pattern.data.incident_ids
    assert [r.contact_id for r in pattern.data.recipients] == ["chief-of-schools"]
    dead = t["message.dead_lettered"]
    assert isinstance(dead, MessageDeadLettered)
    assert dead.data.consumer == "notifier" and dead.data.subject.endswith(
        f"{HAMLINE}.notification.requested"
    )
    for e in events():
        assert e.correlation_id == e.incident_id


# --- upcasting: an older stored version is lifted on read -----------------------------------


def v0_report() -> bytes:
    """The stored report as a (made-up) v0 writer would have stored it: `agents`, not
    `agent_count`."""
    raw = json.loads(stored()[0])
    assert raw["type"] == "encounter.reported"
    raw["schema_version"] = 0
    raw["data"]["agents"] = raw["data"].pop("agent_count")
    return json.dumps(raw).encode()


def lift_v0_report(raw: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in raw["data"].items() if k != "agents"}
    return {**raw, "schema_version": 1, "data": {**data, "agent_count": raw["data"]["agents"]}}


def test_a_stored_older_version_without_an_upcaster_is_refused_clearly() -> None:
    with pytest.raises(EventDecodeError, match=r"no upcaster for 'encounter\.reported' v0"):
        parse_event(v0_report())


def test_a_stored_older_version_is_lifted_on_read_and_never_rewritten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert CURRENT_VERSIONS["encounter.reported"] == 2  # v0 -> v1 (this test) -> v2 (sealing)
    monkeypatch.setitem(UPCASTERS, ("encounter.reported", 0), lift_v0_report)
    log = [v0_report(), *stored()[1:]]  # the "log": v0 report, then the v1 events
    before = list(log)

    lifted = parse_event(log[0])
    assert isinstance(lifted, EncounterReported)
    assert lifted.schema_version == 2 and lifted.data.agent_count == 2
    assert lifted == parse_event(stored()[0])  # the same event as the v1 writer stored

    # Reading again lifts again: the stored bytes still say v0 and still say `agents`.
    assert log == before
    raw = json.loads(log[0])
    assert raw["schema_version"] == 0 and "agents" in raw["data"]
    assert parse_event(log[0]) == lifted

    state = fold(e for e in (parse_event(line) for line in log) if e.incident_id == HAMLINE)
    assert state is not None and state.report is not None and state.report.agent_count == 2
