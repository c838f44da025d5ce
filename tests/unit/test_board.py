"""The district board's order and window (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.report import EncounterReport
from services.domain.board import PatternAlert, open_board
from services.domain.incident import Acknowledgement, Escalation, IncidentState

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
REPORT = EncounterReport.model_validate(
    {
        "school_id": "hamline",
        "location": "Front door",
        "agency_stated": "ice",
        "agent_count": 2,
        "credentials_shown": True,
        "document": "none",
        "signed_by_judge": "unsure",
        "purpose": "unspecified",
        "entry": "kept_outside",
    }
)


def incident(name: str, minutes_ago: float, **update: object) -> IncidentState:
    at = NOW - timedelta(minutes=minutes_ago)
    return IncidentState(
        incident_id=name, school_id="hamline", report=REPORT, reported_at=at, **update
    )


def test_an_incident_reported_before_the_window_is_left_off_the_board() -> None:
    states = [incident("recent", 60), incident("last-month", 60 * 24 * 30)]
    rows = open_board(states, {}, now=NOW, window=timedelta(days=7))
    assert [r.incident_id for r in rows] == ["recent"]


def test_a_confirmed_incident_waits_below_unconfirmed_ones_even_when_newer() -> None:
    ack = Acknowledgement(role="law", contact_id="law-dept", at=NOW, via="link")
    states = [
        incident("old-waiting", 50, require_ack=["law"]),
        incident("new-confirmed", 1, require_ack=["law"], acknowledgements=[ack]),
        incident("half-confirmed", 5, require_ack=["law", "safety"], acknowledgements=[ack]),
    ]
    rows = open_board(states, {}, now=NOW)
    assert [r.incident_id for r in rows] == ["half-confirmed", "old-waiting", "new-confirmed"]
    assert rows[0].waiting_for == ("safety",)


def test_a_row_carries_its_highest_escalation_tier_and_its_pattern_alerts() -> None:
    esc = [
        Escalation(tier=t, reason="deadline", missing_roles=["law"], at=NOW, contact_ids=[])
        for t in (1, 2)
    ]
    seen = [PatternAlert("multi-school", 3, 60)]
    rows = open_board([incident("a", 3, escalations=esc)], {"a": seen}, now=NOW)
    assert rows[0].tier == 2 and rows[0].patterns == (PatternAlert("multi-school", 3, 60),)
