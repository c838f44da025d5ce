"""Idempotency-Keys (services/intake/domain/idempotency.py): the same key and report give the
same incident and record nothing new; a different report under the key is refused with 409."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import EncounterReported, EncounterUpdated, SealedUpdateData
from services.intake.domain.idempotency import (
    check_key,
    compare_stored,
    incident_id_for,
)
from services.intake.domain.refusals import Refused
from services.intake.reports import encounter_event, parse_report
from tests.support import report

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def stored(**overrides: object) -> EncounterReported:
    r = parse_report(report(**overrides), now=T0)
    return encounter_event(r, incident_id="inc-1", actor="intake-key:x", now=T0)


def test_the_same_school_and_key_always_name_the_same_incident() -> None:
    assert incident_id_for("hamline", "k-1") == incident_id_for("hamline", "k-1")
    assert incident_id_for("hamline", "k-1") != incident_id_for("lincoln-park", "k-1")
    assert incident_id_for("hamline", "k-1") != incident_id_for("hamline", "k-2")


def test_without_a_key_every_report_is_a_new_incident() -> None:
    assert incident_id_for("hamline", None) != incident_id_for("hamline", None)


def test_nothing_stored_yet_means_record_it() -> None:
    new = parse_report(report(), now=T0)
    assert compare_stored(None, new, new_had_time=False) == "absent"


def test_the_same_report_again_is_the_same_incident_even_a_minute_later() -> None:
    # Without a time of its own, a report's time is "now": a retry a minute later is the same.
    later = parse_report(report(), now=T0 + timedelta(minutes=1))
    assert compare_stored(stored(), later, new_had_time=False) == "same"


def test_a_different_report_under_the_key_is_refused_with_409() -> None:
    other = parse_report(report(agent_count=7), now=T0)
    refused = compare_stored(stored(), other, new_had_time=False)
    assert refused == Refused("key_reused", "Idempotency-Key already used for a different report")
    assert refused.status == 409


def test_a_different_stated_time_is_a_different_report() -> None:
    at = (T0 - timedelta(minutes=10)).isoformat()
    other = parse_report(report(occurred_at=at), now=T0)
    assert isinstance(compare_stored(stored(), other, new_had_time=True), Refused)


def test_another_kind_of_event_under_the_incident_is_not_the_same_report() -> None:
    update = EncounterUpdated(
        id="u-1",
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=T0,
        recorded_at=T0,
        correlation_id="inc-1",
        actor="x",
        data=SealedUpdateData(entry="left"),
    )
    new = parse_report(report(), now=T0)
    assert isinstance(compare_stored(update, new, new_had_time=False), Refused)


@pytest.mark.parametrize("key", [None, "a", "x" * 200, "form-1 é"])
def test_acceptable_idempotency_keys(key: str | None) -> None:
    assert check_key(key) is None


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"])
def test_unacceptable_idempotency_keys_are_refused_naming_the_header(key: str) -> None:
    refused = check_key(key)
    assert isinstance(refused, Refused) and refused.status == 422
    assert refused.fields == ({"field": "Idempotency-Key", "reason": "1-200 printable characters"},)
