"""Turning a submitted report into an `encounter.reported` event (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from schemas.events import EncounterReported, derive_id, new_event_id
from schemas.report import REFUSED_FIELDS, EncounterReport

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_REPORT_AGE = timedelta(days=7)


class ReportInvalid(Exception):
    """The report failed validation; `fields` lists each bad field and why."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{f['field']}: {f['reason']}" for f in fields))
        self.fields = fields


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(body)"
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown field: not accepted"
            if field in REFUSED_FIELDS:
                reason = (
                    "not accepted: dooralert never records immigration status or personal "
                    "data about students, families or staff"
                )
        elif err["type"] == "missing":
            reason = "required"
        out.append({"field": field, "reason": reason})
    return out


def parse_report(raw: Any, *, now: datetime) -> EncounterReport:
    if not isinstance(raw, dict):
        raise ReportInvalid([{"field": "(body)", "reason": "must be a JSON object"}])
    try:
        report = EncounterReport.model_validate(raw)
    except ValidationError as exc:
        raise ReportInvalid(field_errors(exc)) from None
    if report.occurred_at is not None and report.occurred_at > now + MAX_CLOCK_SKEW:
        raise ReportInvalid([{"field": "occurred_at", "reason": "is in the future"}])
    if report.occurred_at is not None and report.occurred_at < now - MAX_REPORT_AGE:
        raise ReportInvalid(
            [
                {
                    "field": "occurred_at",
                    "reason": "is more than 7 days ago: report current encounters",
                }
            ]
        )
    return report.at(now)


def incident_id_for(school_id: str, idempotency_key: str | None) -> str:
    """The same school and Idempotency-Key always name the same incident."""
    if idempotency_key:
        return derive_id("incident", school_id, idempotency_key)
    return new_event_id()


def encounter_event(
    report: EncounterReport, *, incident_id: str, actor: str, now: datetime
) -> EncounterReported:
    assert report.occurred_at is not None
    return EncounterReported(
        # Derived from the incident id: a retried submission is dropped as a duplicate.
        id=derive_id(incident_id, "encounter.reported"),
        source="intake",
        incident_id=incident_id,
        school_id=report.school_id,
        occurred_at=report.occurred_at,
        recorded_at=now,
        correlation_id=incident_id,
        causation_id=None,
        actor=actor,
        data=report,
    )


def same_report(stored: EncounterReport, new: EncounterReport, *, new_had_time: bool) -> bool:
    """Whether a repeated submission carries the same report (time defaults differ)."""
    exclude = None if new_had_time else {"occurred_at"}
    return stored.model_dump(exclude=exclude) == new.model_dump(exclude=exclude)
