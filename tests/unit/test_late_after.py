"""How long a send may wait before the incident page says "sending is delayed" is a setting
(DOORALERT_LATE_AFTER_SECONDS, default 30 s), and which follow-up buttons a page offers is
named so the live page can tell when they no longer apply."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from schemas.report import EncounterReport
from services.intake.incident_pages import followup_state
from services.intake.status_view import STALL_AFTER, banner, recheck_at
from services.runtime.settings import Settings
from tests.support import report
from tests.unit.test_status_view import CHICAGO, T0, incident, note


def delayed(after: timedelta, late_after: timedelta) -> bool:
    b = banner(
        incident(note("law", "law-dept")),
        now=T0 + after,
        tz=CHICAGO,
        language="en",
        phone=None,
        late_after=late_after,
    )
    return b.delayed is not None and b.tone == "delayed"


def test_the_threshold_is_the_setting_given() -> None:
    five = timedelta(seconds=5)
    assert not delayed(timedelta(seconds=4), five) and delayed(five, five)
    assert recheck_at(incident(note("law", "law-dept")), T0, five) == T0 + five
    # Nothing requested yet (the router stalled): late after the same time.
    assert recheck_at(incident(), T0, five) == T0 + five
    assert not delayed(five, STALL_AFTER)


def test_the_setting_defaults_to_30_s_and_reads_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().late_after_seconds == 30.0 == STALL_AFTER.total_seconds()
    monkeypatch.setenv("DOORALERT_LATE_AFTER_SECONDS", "2.5")
    assert Settings().late_after_seconds == 2.5
    with pytest.raises(ValidationError, match="late_after_seconds"):
        Settings(late_after_seconds=0)


def test_follow_up_state_names_the_buttons_offered() -> None:
    open_ = incident()
    assert followup_state(open_) == "open"
    left = open_.model_copy(
        update={"report": EncounterReport.model_validate({**report(), "entry": "left"})}
    )
    assert followup_state(left) == "open-left"
    assert followup_state(left.model_copy(update={"status": "resolved"})) == "resolved"
