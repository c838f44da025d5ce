"""The JSON API (/api/v1): reports, incident status, staff follow-ups. Thin: authorise, limit,
read the body, call incidents.py (and the decisions in domain/), answer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

from schemas.events import EncounterUpdatedData, IncidentReopenedData, IncidentResolvedData
from schemas.report import EncounterReport
from services.domain.directory import School
from services.domain.incident import IncidentState
from services.eventlog.interface import EventLog
from services.intake import health, i18n
from services.intake.bodies import body_schema, json_body, parse_json, read_body
from services.intake.deps import (
    EventLogDep,
    Intake,
    IntakeDep,
    client_of,
    get_event_log,
    get_intake,
)
from services.intake.domain.idempotency import check_key
from services.intake.errors import ApiError, ReportLimited, refuse
from services.intake.incidents import project, record_follow_up, submit_report
from services.intake.links import LinkRefused, check_not_revoked, opened, read_link, without_notes
from services.intake.notes import get_notes

router = APIRouter()


def bearer(request: Request) -> str | None:
    """The intake key of an `Authorization: Bearer <key>` header."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authorise(intake: Intake, request: Request, key: str | None) -> School:
    """The school an intake key belongs to; 401 without a known key, 429 once an address
    has sent too many wrong ones."""
    school = intake.directory.school_for_key(key) if key else None
    if school is not None:
        return school
    # Only failures count: a correct key from the same address (a school's NAT) always works.
    wait = intake.auth_limiter.take(client_of(request, missing="-"))
    if wait:
        raise ApiError(
            429,
            f"too many wrong intake keys from this address; retry in {int(wait) + 1} s",
            retry_after=int(wait) + 1,
        )
    if not key:
        raise ApiError(401, "missing intake key: send Authorization: Bearer <key>")
    raise ApiError(401, "intake key not recognised")


@dataclass(frozen=True)
class Staff:
    """Who is calling the API: the school of their key, and the key's pseudonymous actor."""

    school: School
    actor: str


def staff_of(intake: Intake, request: Request) -> Staff:
    """The caller's school by their Bearer key (401 without a known one)."""
    key = bearer(request)
    school = authorise(intake, request, key)
    assert key is not None
    # Pseudonymous: which key acted, never the key itself.
    return Staff(school, "intake-key:" + hashlib.sha256(key.encode()).hexdigest()[:12])


async def staff(request: Request, intake: IntakeDep) -> Staff:
    """`staff_of` as a FastAPI dependency; async, so FastAPI runs it in the event loop
    rather than a worker thread."""
    return staff_of(intake, request)


StaffDep = Annotated[Staff, Depends(staff)]


def api_limit(intake: Intake, request: Request, school_id: str | None) -> None:
    """429 with Retry-After (and the emergency number) when a rate limit is reached."""
    wait = intake.limit(school_id=school_id, client=client_of(request, missing="-"))
    if wait:
        phone = intake.phone
        raise ApiError(
            429,
            f"too many requests; retry in {int(wait) + 1} s"
            + (f" (emergency: call {phone})" if phone else ""),
            retry_after=int(wait) + 1,
        )


class DirectRoute(APIRoute):
    """A route whose endpoint takes the request alone and is called as it is: FastAPI
    solves no dependencies for it (nor the app-wide ones: a report by intake key has no
    session to check). Its OpenAPI entry is the route's as declared. For the report, the
    hot path: FastAPI's dependency solving for the four it had (the signed-out check, the
    staff's key, the intake context and the log) was more CPU than the report's
    validation, event and answer together."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


async def post_encounter(request: Request) -> JSONResponse:
    """Record a report (JSON): 202 once it is stored, with its incident's links."""
    intake = get_intake(request)
    who = staff_of(intake, request)
    event_log = get_event_log(request)
    api_limit(intake, request, who.school.id)
    raw = parse_json(await read_body(request, max_bytes=intake.settings.max_report_bytes))
    idem = request.headers.get("idempotency-key")
    if refused := check_key(idem):
        refuse(refused)
    # The answer's links, made while the report's append awaits its acknowledgement.
    links: dict[str, dict[str, str]] = {}

    def make_links(incident_id: str) -> None:
        links[incident_id] = intake.urls(incident_id, actor=who.actor)

    try:
        incident_id, created = await submit_report(
            event_log,
            raw,
            school=who.school,
            actor=who.actor,
            idempotency_key=idem,
            now=datetime.now(UTC),
            admit=partial(intake.admit_report, who.school.id),
            notes=get_notes(request),
            meanwhile=make_links,
        )
    except ReportLimited as exc:
        lang = i18n.from_accept_language(request.headers.get("accept-language"))
        raise ApiError(
            429,
            "too many reports from this school in the last minute; nothing was recorded",
            retry_after=exc.retry_after,
            advice=intake.report_limit_message(exc, lang or i18n.DEFAULT_LANGUAGE),
            emergency_phone=intake.phone,
        ) from None
    return JSONResponse(
        {
            "incident_id": incident_id,
            "created": created,
            **(links.get(incident_id) or intake.urls(incident_id, actor=who.actor)),
            # Stored, but the router or notifier is stalled: say so, with what to do.
            **health.advice(
                request,
                intake.phone,
                i18n.from_accept_language(request.headers.get("accept-language"))
                or i18n.DEFAULT_LANGUAGE,
            ),
        },
        202,
    )


router.add_api_route(
    "/api/v1/encounters",
    post_encounter,
    methods=["POST"],
    status_code=202,
    openapi_extra=body_schema(EncounterReport),
    route_class_override=DirectRoute,
)


@router.get("/api/v1/incidents/{incident_id}")
async def get_incident(
    incident_id: str,
    request: Request,
    intake: IntakeDep,
    event_log: EventLogDep,
    token: str | None = None,
) -> Any:
    key = bearer(request)
    claim = None
    if token and not key:
        try:
            claim = read_link(intake, incident_id, token, now=datetime.now(UTC))
        except LinkRefused as exc:
            raise ApiError(exc.status, exc.reason) from None
    if not key and claim is None:
        raise ApiError(401, "send the school's intake key or the link's token")
    # A key is checked before the log is read: a wrong key learns nothing, costs nothing.
    school = None if claim is not None else authorise(intake, request, key)
    incident = await project(event_log, incident_id, notes=get_notes(request))
    if incident is None:
        raise ApiError(404, "no such incident")
    if school is not None and school.id != incident.school_id:
        raise ApiError(403, "this intake key is for another school")
    if claim is not None:
        try:
            check_not_revoked(claim, incident)
        except LinkRefused as exc:
            raise ApiError(exc.status, exc.reason) from None
        opened(claim, incident)
        if not claim.notes:
            incident = without_notes(incident)
    return JSONResponse(incident.model_dump(mode="json"))


async def _own_incident(event_log: EventLog, who: Staff, incident_id: str) -> IncidentState:
    incident = await project(event_log, incident_id)
    if incident is None:
        raise ApiError(404, "no such incident")
    if incident.school_id != who.school.id:
        raise ApiError(403, "this intake key is for another school")
    return incident


async def _follow_up(
    incident_id: str,
    request: Request,
    who: Staff,
    intake: Intake,
    event_log: EventLog,
    *,
    resolve: bool,
    reopen: bool = False,
) -> JSONResponse:
    incident = await _own_incident(event_log, who, incident_id)
    api_limit(intake, request, incident.school_id)
    raw = await json_body(request, max_bytes=intake.settings.max_report_bytes)
    # An update sent again under the same Idempotency-Key (a retry) is answered with the
    # first one's event id and records nothing; the all-clear and its withdrawal are once
    # per round whatever the key.
    idem = request.headers.get("idempotency-key")
    if refused := check_key(idem):
        refuse(refused)
    event_id, created = await record_follow_up(
        event_log,
        incident,
        who.actor,
        raw,
        resolve=resolve,
        reopen=reopen,
        notes=get_notes(request),
        idempotency_key=idem,
    )
    return JSONResponse({"incident_id": incident_id, "event_id": event_id, "created": created}, 202)


@router.post(
    "/api/v1/incidents/{incident_id}/updates",
    status_code=202,
    openapi_extra=body_schema(EncounterUpdatedData),
)
async def post_update(
    incident_id: str, request: Request, who: StaffDep, intake: IntakeDep, event_log: EventLogDep
) -> JSONResponse:
    return await _follow_up(incident_id, request, who, intake, event_log, resolve=False)


@router.post(
    "/api/v1/incidents/{incident_id}/resolve",
    status_code=202,
    openapi_extra=body_schema(IncidentResolvedData, required=False),
)
async def post_resolve(
    incident_id: str, request: Request, who: StaffDep, intake: IntakeDep, event_log: EventLogDep
) -> JSONResponse:
    return await _follow_up(incident_id, request, who, intake, event_log, resolve=True)


@router.post(
    "/api/v1/incidents/{incident_id}/reopen",
    status_code=202,
    openapi_extra=body_schema(IncidentReopenedData, required=False),
)
async def post_reopen(
    incident_id: str, request: Request, who: StaffDep, intake: IntakeDep, event_log: EventLogDep
) -> JSONResponse:
    """Withdraw the all-clear (the agents are back): the incident is open again; 409 while
    it is open."""
    return await _follow_up(
        incident_id, request, who, intake, event_log, resolve=False, reopen=True
    )
