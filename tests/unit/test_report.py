"""The encounter report (DESIGN §4): what staff may record, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.report import REFUSED_FIELDS, EncounterReport
from services.intake.reports import ReportInvalid, parse_report
from tests.support import report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)

# The contract, written out so a change to the enums is a deliberate change to this file.
CONTRACT_ENUMS = {
    "agency_stated": [
        "ice",
        "cbp",
        "hsi",
        "dhs_other",
        "fbi",
        "us_marshals",
        "local_police",
        "other",
        "unknown",
    ],
    "document": [
        "none",
        "administrative_warrant",
        "administrative_subpoena",
        "judicial_warrant",
        "judicial_subpoena",
        "court_order",
        "unknown",
    ],
    "signed_by_judge": ["yes", "no", "unsure"],
    "purpose": ["student", "parent", "staff", "records", "unspecified"],
    "entry": ["kept_outside", "left", "entered_with_warrant", "entered_without_consent"],
}


def errors_for(**overrides: object) -> list[dict[str, str]]:
    with pytest.raises(ReportInvalid) as exc:
        parse_report(report(**overrides), now=NOW)
    return exc.value.fields


def test_a_complete_report_is_accepted_and_dated_now_when_no_time_is_given() -> None:
    r = parse_report(report(), now=NOW)
    assert r.school_id == "hamline"
    assert r.occurred_at == NOW
    assert r.notes is None


@pytest.mark.parametrize("field", sorted(REFUSED_FIELDS))
def test_personal_data_fields_are_refused_by_the_report_model(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        EncounterReport.model_validate(report(**{field: "anything"}))
    assert [e["type"] for e in exc.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize("field", ["immigration_status", "student_name", "a_number", "ssn"])
def test_refused_fields_are_explained_as_never_recorded(field: str) -> None:
    [err] = errors_for(**{field: "x"})
    assert err["field"] == field
    assert "never records immigration status" in err["reason"]


def test_an_unknown_field_is_refused_as_unknown() -> None:
    [err] = errors_for(favourite_colour="blue")
    assert err == {"field": "favourite_colour", "reason": "unknown field: not accepted"}


def test_a_missing_required_field_is_reported_as_required() -> None:
    raw = report()
    del raw["entry"]
    with pytest.raises(ReportInvalid) as exc:
        parse_report(raw, now=NOW)
    assert exc.value.fields == [{"field": "entry", "reason": "required"}]


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ReportInvalid) as exc:
        parse_report(["not", "an", "object"], now=NOW)
    assert exc.value.fields[0]["field"] == "(body)"


@pytest.mark.parametrize("count", [1, 2, 50])
def test_agent_count_from_one_to_fifty_is_accepted(count: int) -> None:
    assert parse_report(report(agent_count=count), now=NOW).agent_count == count


@pytest.mark.parametrize("count", [0, -1, 51, 1000])
def test_agent_count_outside_one_to_fifty_is_refused(count: int) -> None:
    [err] = errors_for(agent_count=count)
    assert err["field"] == "agent_count"


@pytest.mark.parametrize(
    "location",
    [
        "Front\ndoor",
        "Front\rdoor",
        "Front\tdoor",
        "Front\x00door",
        "Door\x1b[31m",
        "Front\u2028door",
        "Front\x85door",
        "Front\x7fdoor",
    ],
)
def test_location_must_be_a_single_line_without_control_characters(location: str) -> None:
    [err] = errors_for(location=location)
    assert err["field"] == "location"
    assert "single line" in err["reason"]


def test_location_surrounding_whitespace_is_trimmed() -> None:
    assert parse_report(report(location="  Gym door \n"), now=NOW).location == "Gym door"


@pytest.mark.parametrize("location", ["", "   ", "x" * 121])
def test_location_empty_or_longer_than_120_is_refused(location: str) -> None:
    [err] = errors_for(location=location)
    assert err["field"] == "location"


def test_location_of_120_characters_and_accents_is_accepted() -> None:
    assert parse_report(report(location="é" * 120), now=NOW).location == "é" * 120


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in CONTRACT_ENUMS.items() for v in values]
)
def test_every_contract_enum_value_is_accepted(field: str, value: str) -> None:
    parsed = parse_report(report(**{field: value}), now=NOW)
    assert getattr(parsed, field) == value


@pytest.mark.parametrize("field", sorted(CONTRACT_ENUMS))
@pytest.mark.parametrize("value", ["ICE ", "immigration", "", 1, None])
def test_values_outside_an_enum_are_refused(field: str, value: object) -> None:
    [err] = errors_for(**{field: value})
    assert err["field"] == field


def test_the_enums_are_exactly_the_contract() -> None:
    for field, values in CONTRACT_ENUMS.items():
        ann = EncounterReport.model_fields[field].annotation
        assert sorted(m.value for m in ann) == sorted(values)  # type: ignore[union-attr]


def test_notes_may_span_lines_up_to_500_characters() -> None:
    notes = "Two agents.\nAsked for the office.\r\n\tWaited" + "." * 400
    assert parse_report(report(notes=notes), now=NOW).notes == notes.strip()
    [err] = errors_for(notes="x" * 501)
    assert err["field"] == "notes"


def test_notes_with_control_characters_are_refused() -> None:
    [err] = errors_for(notes="ok\x00then")
    assert err["field"] == "notes"


def test_empty_notes_are_stored_as_no_notes() -> None:
    assert parse_report(report(notes="   "), now=NOW).notes is None


@pytest.mark.parametrize("school_id", ["Hamline", "ham line", "../etc", "", "x" * 65])
def test_school_id_must_be_a_token(school_id: str) -> None:
    [err] = errors_for(school_id=school_id)
    assert err["field"] == "school_id"


def test_a_time_without_a_timezone_is_refused() -> None:
    [err] = errors_for(occurred_at="2025-03-01T09:00:00")
    assert err["field"] == "occurred_at"


def test_a_given_time_is_kept() -> None:
    at = NOW - timedelta(minutes=3)
    assert parse_report(report(occurred_at=at.isoformat()), now=NOW).occurred_at == at


def test_a_time_more_than_five_minutes_in_the_future_is_refused() -> None:
    [err] = errors_for(occurred_at=(NOW + timedelta(minutes=6)).isoformat())
    assert err == {"field": "occurred_at", "reason": "is in the future"}


def test_a_report_cannot_be_changed_after_it_is_made() -> None:
    r = parse_report(report(), now=NOW)
    with pytest.raises(ValidationError):
        r.agent_count = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent_count", "5"),
        ("agent_count", True),
        ("agent_count", 5.0),
        ("credentials_shown", "yes"),
        ("credentials_shown", "true"),
        ("credentials_shown", 1),
    ],
)
def test_numbers_and_yes_no_answers_given_as_other_types_are_refused_not_coerced(
    field: str, value: object
) -> None:
    [err] = errors_for(**{field: value})
    assert err["field"] == field and "valid" in err["reason"]
