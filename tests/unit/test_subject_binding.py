"""An event is only what its subject says (DESIGN §4): the one check every reader goes
through, and the fold's own guard. A service user may publish only on its own event types'
subjects, so a payload claiming another type, incident or school is a forgery or a bug."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from schemas.envelope import originating
from schemas.events import (
    EncounterReported,
    Event,
    EventDecodeError,
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    PatternDetected,
    PatternDetectedData,
    SubjectMismatch,
    derive_id,
    parse_stored,
    serialize_event,
    subject_for,
)
from services.audit.replay import replay
from services.domain.directory import load_directory
from services.domain.incident import fold
from services.eventlog import StoredMessage, readable_events
from services.intake.reports import encounter_event, parse_report
from services.notifier.channels import PermanentDeliveryError
from services.notifier.plan import Found, plan_delivery
from tests.fixtures.notifier_support import request
from tests.support import EXAMPLES, report
from tests.unit.test_notifier_plan import PLAN

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def encounter(incident_id: str = "inc-1", **overrides: Any) -> EncounterReported:
    r = parse_report(report(**overrides), now=NOW)
    return encounter_event(r, incident_id=incident_id, actor="key-hamline", now=NOW)


def ack(role: str, *, incident_id: str = "inc-1", school_id: str = "hamline") -> Event:
    return originating(
        IncidentAcknowledged,
        IncidentAcknowledgedData(role=role, contact_id=f"{role}-contact", via="link"),
        id=derive_id("forged", role, incident_id, school_id),
        source="intake",
        incident_id=incident_id,
        school_id=school_id,
        now=NOW,
    )


def stored(event: Event, subject: str | None = None, seq: int = 1) -> StoredMessage:
    return StoredMessage(
        seq=seq, subject=subject or subject_for(event), time=NOW, data=serialize_event(event)
    )


def test_an_event_on_its_own_subject_is_read() -> None:
    event = ack("law")
    assert parse_stored(serialize_event(event), subject_for(event)) == event


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        (
            "dooralert.hamline.inc-1.notification.sent",
            "subject says notification.sent but the payload is incident.acknowledged",
        ),
        (
            "dooralert.hamline.inc-2.incident.acknowledged",
            "subject says incident inc-2 but the payload is about incident inc-1",
        ),
        (
            "dooralert.lincoln-park.inc-1.incident.acknowledged",
            "subject says school lincoln-park but the payload is about school hamline",
        ),
        ("dooralert.hamline.incident", "is not <prefix>.<school>.<incident>.<event type>"),
    ],
    ids=["other-type", "other-incident", "other-school", "short-subject"],
)
def test_a_payload_that_is_not_what_its_subject_says_is_refused(subject: str, reason: str) -> None:
    with pytest.raises(SubjectMismatch, match=reason) as caught:
        parse_stored(serialize_event(ack("law")), subject)
    # Every reader that already sets unreadable messages aside sets these aside too.
    assert isinstance(caught.value, EventDecodeError)


def test_a_stored_message_is_bound_to_its_subject() -> None:
    forged = stored(ack("law"), "dooralert.hamline.inc-1.notification.sent")
    with pytest.raises(SubjectMismatch):
        forged.event()


def test_an_incident_read_skips_a_forged_ack_and_logs_where_it_is_not_what() -> None:
    report_event = encounter()
    messages = [
        stored(report_event, seq=1),
        stored(ack("law"), "dooralert.hamline.inc-1.notification.sent", seq=2),
        stored(ack("safety"), seq=3),
    ]
    with capture_logs() as logs:
        events = readable_events(messages)
    assert [e.type for e in events] == ["encounter.reported", "incident.acknowledged"]
    state = fold(events, incident_id="inc-1")
    assert state is not None and state.acknowledged_roles() == {"safety"}
    [logged] = [e for e in logs if e["event"] == "event.subject_mismatch"]
    assert logged["seq"] == 2 and logged["subject"].endswith(".notification.sent")
    assert logged["log_level"] == "error"
    assert "law-contact" not in repr(logged)  # never the payload


def test_the_fold_never_folds_an_ack_about_another_incident_or_school() -> None:
    events = [
        encounter(),
        ack("law", incident_id="inc-2"),
        ack("safety", school_id="lincoln-park"),
    ]
    state = fold(events)
    assert state is not None
    assert (state.incident_id, state.school_id) == ("inc-1", "hamline")
    assert state.acknowledgements == [] and state.missing_acks() == state.require_ack
    assert state.event_count == 1


def test_the_fold_of_a_named_incident_ignores_events_before_it_about_another() -> None:
    state = fold([ack("law", incident_id="inc-2"), encounter(), ack("law")], incident_id="inc-1")
    assert state is not None and state.incident_id == "inc-1"
    assert state.acknowledged_roles() == {"law"} and state.event_count == 2
    assert fold([ack("law", incident_id="inc-2")], incident_id="inc-1") is None


def test_replay_sets_a_forged_ack_aside_and_never_folds_it() -> None:
    messages = [
        stored(encounter(), seq=1),
        stored(ack("law"), "dooralert.hamline.inc-1.escalation.decided", seq=2),
    ]
    text, code = replay(messages, incident=None, as_json=False)
    assert code == 0
    assert "seq 2 (dooralert.hamline.inc-1.escalation.decided): set aside: subject says" in text
    assert "incident.acknowledged" not in text.split("set aside")[0]
    as_json, _ = replay(messages, incident="inc-1", as_json=True)
    assert '"acknowledgements": []' in as_json


def test_a_pattern_alert_refuses_a_pattern_event_about_another_incident() -> None:
    pattern = originating(
        PatternDetected,
        PatternDetectedData(
            pattern="multi-school",
            window_minutes=30,
            incident_ids=["inc-1", "inc-2"],
            school_ids=["hamline", "lincoln-park"],
            severity="critical",
            recipients=[],
        ),
        id="p-1",
        source="router",
        incident_id="pattern-1",
        school_id="district",
        now=NOW,
    )
    other = request("pattern-2", "chief-of-schools", kind="pattern", school_id="district")
    with pytest.raises(PermanentDeliveryError, match="subject says incident pattern-2"):
        plan_delivery(
            other,
            Found(pattern=serialize_event(pattern)),
            directory=load_directory(EXAMPLES),
            settings=PLAN,
            now=NOW,
        )
