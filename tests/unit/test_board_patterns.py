"""The board's pattern column says what a pattern alert saw, in words (en/es), not the rule's
id: one entry per pattern, the latest alert of that pattern (the most schools) winning."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import PatternDetected
from services.domain.board import PatternAlert, board_text, patterns_by_incident

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def alert(name: str, incidents: list[str], schools: list[str]) -> PatternDetected:
    return PatternDetected.model_validate(
        {
            "id": f"p-{name}-{len(schools)}",
            "source": "router",
            "incident_id": f"pattern-{name}-{len(schools)}",
            "school_id": "district",
            "occurred_at": T0,
            "recorded_at": T0,
            "correlation_id": f"pattern-{name}",
            "actor": "system",
            "data": {
                "pattern": name,
                "window_minutes": 60,
                "incident_ids": incidents,
                "school_ids": schools,
                "severity": "critical",
                "recipients": [],
            },
        }
    )


def test_one_entry_per_pattern_the_latest_alert_winning() -> None:
    seen = patterns_by_incident(
        [
            alert("multi-school", ["a", "b", "c"], ["s1", "s2", "s3"]),
            alert("multi-school", ["a", "b", "c", "d"], ["s1", "s2", "s3", "s4"]),
            alert("same-school", ["a", "e"], ["s1"]),
        ]
    )
    assert seen["a"] == [PatternAlert("multi-school", 4, 60), PatternAlert("same-school", 1, 60)]
    assert seen["d"] == [PatternAlert("multi-school", 4, 60)]
    assert seen["e"] == [PatternAlert("same-school", 1, 60)]


def test_the_words_in_both_languages() -> None:
    p = PatternAlert("multi-school", 3, 60)
    values = {"schools": p.schools, "minutes": p.minutes}
    assert board_text("board.pattern", "en", **values) == (
        "Encounters at 3 schools within 60 minutes"
    )
    assert board_text("board.pattern", "es", **values) == ("Encuentros en 3 escuelas en 60 minutos")
