"""Acknowledgement routes: the API's POST and the link a responder opens (GET shows a
confirm button, POST records). What is acknowledged is decided in domain/acks.py."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from schemas.events import IncidentAcknowledged
from services.domain.incident import IncidentState, evolve
from services.eventlog.interface import EventLog
from services.intake.ack_pages import ack_page
from services.intake.bodies import body_schema, json_body
from services.intake.deps import EventLogDep, Intake, IntakeDep
from services.intake.domain.acks import Via, decide_ack, read_claim
from services.intake.domain.refusals import Refused
from services.intake.errors import ReportInvalid, refuse
from services.intake.forms import same_origin
from services.intake.incidents import project, record
from services.intake.render import PageError, error_page
from services.runtime.logging import get_logger
from services.runtime.metrics import ACK_DELAY, seconds_between

log = get_logger("dooralert.intake")
router = APIRouter()


class AckRequest(BaseModel):
    """An acknowledgement through the API: the token from the alert's link."""

    token: str


async def acknowledge(
    intake: Intake,
    event_log: EventLog,
    token: str,
    *,
    via: Via,
    record_it: bool,
    incident_id: str | None = None,
) -> IncidentAcknowledged | Refused:
    """Check an ack token against the log; record the acknowledgement when `record_it`.
    Returns the acknowledgement (recorded, or that would be) or why it is refused."""
    outcome, _ = await checked_ack(
        intake, event_log, token, via=via, record_it=record_it, incident_id=incident_id
    )
    return outcome


async def checked_ack(
    intake: Intake,
    event_log: EventLog,
    token: str,
    *,
    via: Via,
    record_it: bool,
    incident_id: str | None = None,
) -> tuple[IncidentAcknowledged | Refused, IncidentState | None]:
    """`acknowledge`, with the incident as it stands after it (None if the token is bad)."""
    now = datetime.now(UTC)
    claim = read_claim(intake.keys, token, now=now, incident_id=incident_id)
    if isinstance(claim, Refused):
        return claim, None
    incident = await project(event_log, claim.incident_id)
    decision = decide_ack(claim, incident, via=via, now=now)
    if isinstance(decision, Refused) or not record_it:
        return decision, incident
    await record(event_log, decision)
    if incident is not None and incident.reported_at is not None:
        ACK_DELAY.labels(claim.role).observe(seconds_between(incident.reported_at, now))
    log.info(
        "incident.acknowledged",
        incident=decision.incident_id,
        role=claim.role,
        contact=claim.contact_id,
        via=via,
    )
    return decision, evolve(incident, decision)


@router.post(
    "/api/v1/incidents/{incident_id}/ack", status_code=202, openapi_extra=body_schema(AckRequest)
)
async def post_ack(
    incident_id: str, request: Request, intake: IntakeDep, event_log: EventLogDep
) -> JSONResponse:
    raw = await json_body(request, max_bytes=intake.settings.max_report_bytes)
    token = raw.get("token") if isinstance(raw, dict) else None
    if not isinstance(token, str):
        raise ReportInvalid([{"field": "token", "reason": "required"}])
    outcome = await acknowledge(
        intake, event_log, token, via="api", record_it=True, incident_id=incident_id
    )
    if isinstance(outcome, Refused):
        refuse(outcome)
    return JSONResponse({"incident_id": incident_id, "status": "acknowledged"}, 202)


@router.get("/ack/{token}", response_class=HTMLResponse)
async def ack_confirm(
    token: str, request: Request, intake: IntakeDep, event_log: EventLogDep
) -> HTMLResponse:
    # A GET never acknowledges: mail scanners follow links.
    outcome, incident = await checked_ack(intake, event_log, token, via="link", record_it=False)
    state = outcome if isinstance(outcome, Refused) else "confirm"
    return ack_page(intake, request, token, outcome=state, incident=incident)


@router.post("/ack/{token}", response_class=HTMLResponse)
async def ack_record(
    token: str, request: Request, intake: IntakeDep, event_log: EventLogDep
) -> HTMLResponse:
    # No session or CSRF cookie here: the unguessable signed token in the URL is what a
    # forger would lack. A cross-site POST is still refused by its Origin.
    if not same_origin(intake, request):
        return error_page(intake, request, PageError(403, "error.origin"), None)
    outcome, incident = await checked_ack(intake, event_log, token, via="link", record_it=True)
    state = outcome if isinstance(outcome, Refused) else "acknowledged"
    return ack_page(intake, request, token, outcome=state, incident=incident)
