"""Turning a submitted report into an `encounter.reported` event (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from schemas.envelope import originating
from schemas.events import EncounterReported, SealedReport, SealedText, derive_id
from schemas.report import REFUSED_FIELDS, EncounterReport
from services.intake.domain.screen import personal_data_errors
from services.intake.errors import ReportInvalid

__all__ = ["ReportInvalid", "encounter_event", "field_errors", "parse_report"]

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_REPORT_AGE = timedelta(days=7)


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Each field a validation error names, with a reason a person can act on."""
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
    """A validated report, its time defaulted to `now`; `ReportInvalid` names what is wrong."""
    if not isinstance(raw, dict):
        raise ReportInvalid([{"field": "(body)", "reason": "must be a JSON object"}])
    if refused := personal_data_errors(raw):
        raise ReportInvalid(refused)  # says what the text looks like, never the text
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


class SealNotes(Protocol):
    """Seals one note of one event under the incident's key."""

    def __call__(self, text: str, *, event_id: str, field: str) -> SealedText: ...


def encounter_event(
    report: EncounterReport,
    *,
    incident_id: str,
    actor: str,
    now: datetime,
    seal: SealNotes | None = None,
) -> EncounterReported:
    """The `encounter.reported` event that starts incident `incident_id`; its notes sealed
    with `seal` (a report with notes and no `seal` is a bug: the notes never go in clear)."""
    assert report.occurred_at is not None
    # Derived from the incident id: a retried submission is dropped as a duplicate.
    event_id = derive_id(incident_id, "encounter.reported")
    if report.notes and seal is None:
        raise ValueError("a report's notes must be sealed before they are recorded")
    facts = report.model_dump(exclude={"notes"})
    sealed = seal(report.notes, event_id=event_id, field="notes") if seal and report.notes else None
    return originating(
        EncounterReported,
        SealedReport.model_validate({**facts, "notes_sealed": sealed}),
        id=event_id,
        source="intake",
        incident_id=incident_id,
        school_id=report.school_id,
        now=now,
        actor=actor,
        occurred_at=report.occurred_at,
    )
