"""The intake's use of the screen (pure): the API's field errors, and what the form holds back."""

from __future__ import annotations

from services.domain.screening import screen
from services.intake.domain.screen import WITHHELD_LOCATION, hold_back, personal_data_errors
from tests.support import report


def test_field_errors_say_what_the_text_looks_like_and_never_echo_it():
    errors = personal_data_errors(report(notes="mom 651-555-0199", location="Room of Ana Ruiz"))
    assert {e["field"] for e in errors} == {"notes", "location"}
    assert all("651" not in e["reason"] and "Ana" not in e["reason"] for e in errors)
    assert any("looks like a phone number" in e["reason"] for e in errors)


def test_a_clean_report_or_a_non_object_has_no_errors():
    assert personal_data_errors(report(notes="Two agents waited outside")) == []
    assert personal_data_errors(["notes", "651-555-0199"]) == []


def test_hold_back_drops_notes_and_replaces_the_location_keeping_every_other_field():
    raw = report(notes="DOB 3/2/15", location="Door of Maria Lopez")
    cleaned, held = hold_back(raw)
    assert "notes" not in cleaned and cleaned["location"] == WITHHELD_LOCATION
    assert {k: v for k, v in cleaned.items() if k != "location"} == {
        k: v for k, v in raw.items() if k not in ("notes", "location")
    }
    assert [(h.field, h.text) for h in held] == [
        ("location", "Door of Maria Lopez"),
        ("notes", "DOB 3/2/15"),
    ]
    assert screen(WITHHELD_LOCATION) == ()  # the stand-in passes its own screen


def test_hold_back_leaves_a_clean_report_alone():
    raw = report(notes="Agents left at 10:40")
    assert hold_back(raw) == (raw, [])
