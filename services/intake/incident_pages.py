"""The incident page and its live status (server-sent events), for staff of the incident's
school or whoever holds the link's view token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from schemas.report import Document, SignedByJudge
from services.domain.incident import IncidentState
from services.domain.tokens import check_view_token
from services.eventlog.interface import EventLog
from services.intake.deps import EventLogDep, Intake, IntakeDep, SessionDep, read_session
from services.intake.errors import Unavailable
from services.intake.incidents import project
from services.intake.render import TEMPLATES, PageError, error_page, language, render, translations

router = APIRouter()


async def viewable(
    intake: Intake, event_log: EventLog, request: Request, incident_id: str, token: str | None
) -> IncidentState:
    """The incident, if the link's token or a session of its school allows reading it."""
    by_token = check_view_token(intake.secret, incident_id, token)
    session = read_session(intake, request).session
    if not by_token and (session is None or session.school_id is None):
        raise PageError(401, "signin.expired")
    incident = await project(event_log, incident_id)
    if incident is None:
        raise PageError(404, "error.not_found")
    if not by_token and session is not None and session.school_id != incident.school_id:
        raise PageError(403, "error.other_school")
    return incident


def incident_context(intake: Intake, request: Request, incident: IncidentState) -> dict[str, Any]:
    """What the incident page and its live fragment show."""
    lang = language(request)[0]
    school = intake.directory.school(incident.school_id)
    query_token = request.query_params.get("token")
    token = check_view_token(intake.secret, incident.incident_id, query_token)
    protocol = intake.protocol
    return {
        "incident": incident,
        "school_name": school.name if school else incident.school_id,
        "names": {c.id: c.name for c in intake.directory.contacts},
        "protocol": protocol.text(incident.report.document, lang) if incident.report else "",
        "always": protocol.always_text(lang),
        "documents": list(Document),
        "signed_choices": list(SignedByJudge),
        "events_url": f"/incidents/{incident.incident_id}/events"
        + (f"?token={query_token}" if token else ""),
    }


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(
    incident_id: str,
    request: Request,
    intake: IntakeDep,
    current: SessionDep,
    event_log: EventLogDep,
    token: str | None = None,
) -> HTMLResponse:
    session = current.session
    try:
        incident = await viewable(intake, event_log, request, incident_id, token)
    except PageError as exc:
        return error_page(intake, request, exc, session)
    ctx = incident_context(intake, request, incident)
    can_follow_up = session is not None and session.school_id == incident.school_id
    return render(
        intake,
        request,
        "incident.html",
        {**ctx, "can_follow_up": can_follow_up},
        session=session,
    )


def status_event(intake: Intake, request: Request, state: IncidentState) -> str:
    """One server-sent `status` event: the status fragment rendered for `state`."""
    html = TEMPLATES.get_template("_status.html").render(
        {**incident_context(intake, request, state), **translations(language(request)[0])}
    )
    data = json.dumps({"event_count": state.event_count, "status": state.status, "html": html})
    return f"event: status\nid: {state.event_count}\ndata: {data}\n\n"


async def status_stream(
    intake: Intake, event_log: EventLog, request: Request, first: IncidentState
) -> AsyncIterator[str]:
    """The status now, then again whenever the projection changes, until `live_max_seconds`."""
    settings = intake.settings
    last = first
    yield "retry: 2000\n\n" + status_event(intake, request, last)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.live_max_seconds
    while loop.time() < deadline:
        await asyncio.sleep(settings.live_poll_seconds)
        if await request.is_disconnected():
            return
        try:
            state = await project(event_log, first.incident_id)
        except Unavailable:
            yield ": log unreachable\n\n"
            continue
        if state is not None and state != last:
            last = state
            yield status_event(intake, request, state)
        else:
            yield ": keep-alive\n\n"


@router.get("/incidents/{incident_id}/events")
async def incident_events(
    incident_id: str,
    request: Request,
    intake: IntakeDep,
    event_log: EventLogDep,
    token: str | None = None,
) -> Response:
    """Server-sent events: the status fragment, sent again whenever the projection changes."""
    try:
        incident = await viewable(intake, event_log, request, incident_id, token)
    except PageError as exc:
        return Response(exc.key, exc.status, media_type="text/plain")
    return StreamingResponse(
        status_stream(intake, event_log, request, incident),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
