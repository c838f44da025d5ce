"""The report form's fields as a report (pure): the fast path's defaults make a valid report
from a door alone, the door tile or the typed text, notes counted as the browser counts them,
and errors in plain words decided from the value sent."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from schemas.report import EncounterReport
from services.intake.forms import OTHER_DOOR, field_message, form_defaults, report_from_form

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


def sent(**fields: str) -> EncounterReport:
    values = {**form_defaults(TZ, now=NOW), "csrf_token": "t", "submission_id": "s", **fields}
    raw = report_from_form(values, school_id="hamline", tz=TZ, now=NOW)
    return EncounterReport.model_validate(raw)


def test_a_door_alone_makes_a_valid_report_of_unknowns():
    report = sent(door="Gym door")
    assert report.location == "Gym door"
    assert (report.agency_stated, report.document, report.purpose) == (
        "unknown",
        "unknown",
        "unspecified",
    )
    assert report.signed_by_judge == "unsure" and report.entry == "kept_outside"
    assert report.agent_count == 1 and report.credentials_shown is False


def test_the_other_tile_or_no_tile_takes_the_typed_door():
    assert sent(door=OTHER_DOOR, location="Boiler room").location == "Boiler room"
    assert sent(location="Boiler room").location == "Boiler room"
    assert sent(door="Back gate", location="typed before").location == "Back gate"


def test_language_switch_and_door_fields_are_not_part_of_the_report():
    assert sent(door="Gym door", switch_lang="es").location == "Gym door"


def test_notes_line_breaks_count_once_as_in_the_browser():
    notes = "\r\n".join(["x"] * 250)  # 499 characters as a browser's textarea counts them
    report = sent(door="Gym door", notes=notes)
    assert report.notes == "\n".join(["x"] * 250)


@pytest.mark.parametrize(
    ("field", "values", "lang", "words"),
    [
        ("location", {"location": ""}, "en", "Please enter the door"),
        ("location", {"location": ""}, "es", "Escriba la puerta"),
        ("location", {"location": "x" * 121}, "en", "The door can be at most 120 characters"),
        ("location", {"door": "a\u2028b"}, "en", "Write the door on one line"),
        ("notes", {"notes": "x" * 501}, "en", "Notes can be at most 500 characters"),
        ("notes", {"notes": "x" * 501}, "es", "Las notas pueden tener como máximo 500 caracteres"),
        ("notes", {"notes": "a\x00b"}, "en", "Notes can only contain ordinary text"),
        ("agent_count", {"agent_count": "0"}, "en", "Enter how many agents, from 1 to 50"),
        ("document", {"document": "bogus"}, "es", "Elija una de las opciones"),
    ],
)
def test_errors_are_plain_words_in_the_language_of_the_page(field, values, lang, words):
    assert field_message(field, values, lang) == words
