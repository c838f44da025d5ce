"""The incident page and its live status (server-sent events), for staff of the incident's
school or whoever holds the link's view token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from schemas.events import new_event_id
from schemas.report import Agency, Document, Entry, Purpose, SignedByJudge
from services.domain.incident import IncidentState
from services.eventlog.interface import EventLog
from services.intake import health
from services.intake.deps import (
    EventLogDep,
    Intake,
    IntakeDep,
    SessionDep,
    client_of,
    read_session,
)
from services.intake.incidents import project
from services.intake.links import LinkRefused, check_not_revoked, opened, read_link, shown, staff_of
from services.intake.live import Lease, LiveLimited, Reader
from services.intake.notes import get_notes
from services.intake.render import TEMPLATES, PageError, error_page, language, render, translations
from services.intake.security import Session
from services.intake.status_view import (
    banner,
    local_datetime,
    local_time,
    per_contact,
    recheck_at,
)
from services.runtime.logging import get_logger

router = APIRouter()
log = get_logger("dooralert.intake")

# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0


async def viewable(
    intake: Intake, event_log: EventLog, request: Request, incident_id: str, token: str | None
) -> IncidentState:
    """The incident, if a session of its school or a valid, unrevoked link for it allows
    reading it; a refused link gets its own page (expired, revoked, not valid)."""
    session = read_session(intake, request).session
    claim, refused = None, None
    if token:
        try:
            claim = read_link(intake, incident_id, token, now=datetime.now(UTC))
        except LinkRefused as exc:
            refused = PageError(exc.status, exc.key)
    if claim is None and (session is None or session.school_id is None):
        raise refused or PageError(401, "signin.expired")
    incident = await project(event_log, incident_id, notes=get_notes(request))
    if incident is None:
        raise PageError(404, "error.not_found")
    if staff_of(intake, request, incident):
        return incident
    if claim is None:
        raise refused or PageError(403, "error.other_school")
    try:
        check_not_revoked(claim, incident)
    except LinkRefused as exc:
        raise PageError(exc.status, exc.key) from None
    opened(claim, incident)
    return incident


def late_after(intake: Intake) -> timedelta:
    """How long a send may wait before the page warns it is late (DOORALERT_LATE_AFTER_SECONDS)."""
    return timedelta(seconds=intake.settings.late_after_seconds)


def followup_state(incident: IncidentState) -> str:
    """Which follow-up buttons the page offers: open or resolved, and once open whether the
    agents have left ("The agents are back") or not ("The agents have left")."""
    if incident.status == "resolved":
        return "resolved"
    left = incident.report is not None and incident.report.entry == "left"
    return "open-left" if left else "open"


def incident_context(intake: Intake, request: Request, incident: IncidentState) -> dict[str, Any]:
    """What the incident page and its live fragment show."""
    lang = language(request)[0]
    school = intake.directory.school(incident.school_id)
    query_token = request.query_params.get("token")
    protocol = intake.protocol
    tz = intake.timezone
    return {
        "banner": banner(
            incident,
            now=datetime.now(UTC),
            tz=tz,
            language=lang,
            phone=intake.phone,
            late_after=late_after(intake),
        ),
        # What the follow-up buttons offered depend on: a live update that changes it
        # reloads the page (intake.js), so nobody presses a button that no longer applies.
        "followup_state": followup_state(incident),
        "per_contact": per_contact(incident),
        "at": partial(local_time, tz=tz, language=lang),
        "on": partial(local_datetime, tz=tz, language=lang),
        # Without notes when the link was sent to a shared place (chat, webhook).
        "incident": shown(intake, request, incident),
        "school_name": school.name if school else incident.school_id,
        # A door of the school reads in the page's language (the report keeps its id).
        "where": school.door_name(incident.report.location, lang)
        if school and incident.report
        else (incident.report.location if incident.report else ""),
        "names": {c.id: c.name_in(lang) for c in intake.directory.contacts},
        "protocol": protocol.text(incident.report.document, lang) if incident.report else "",
        "always": protocol.always_text(lang),
        "documents": list(Document),
        "signed_choices": list(SignedByJudge),
        "entries": list(Entry),
        "agencies": list(Agency),
        "purposes": list(Purpose),
        "events_url": f"/incidents/{incident.incident_id}/events"
        + (f"?token={quote(query_token)}" if query_token else ""),
        # The router or notifier is stalled: alerts may be late, so say whom to call.
        "pipeline": health.advice(request, intake.phone, lang),
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
        # One per page shown: its follow-up form sent twice records one update.
        {**ctx, "can_follow_up": can_follow_up, "submission_id": new_event_id()},
        session=session,
    )


def status_event(intake: Intake, request: Request, state: IncidentState) -> str:
    """One server-sent `status` event: the status fragment rendered for `state`."""
    html = TEMPLATES.get_template("_status.html").render(
        {**incident_context(intake, request, state), **translations(language(request)[0])}
    )
    data = json.dumps(
        {
            "event_count": state.event_count,
            "status": state.status,
            "followup": followup_state(state),
            "html": html,
        }
    )
    return f"event: status\nid: {state.event_count}\ndata: {data}\n\n"


async def status_stream(
    intake: Intake, request: Request, first: IncidentState, read: Reader, lease: Lease
) -> AsyncIterator[str]:
    """The status now, then again whenever the incident's shared poller sees it change, until
    `live_max_seconds` (the browser then reconnects)."""
    try:
        yield "retry: 2000\n\n" + status_event(intake, request, first)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + intake.settings.live_max_seconds
        async with intake.live.watch(first, read) as watch:
            last, seen = first, -1
            while not watch.closed:
                if watch.version != seen:
                    seen = watch.version
                    if watch.unreachable:
                        yield ": log unreachable\n\n"
                    elif watch.state != last:
                        last = watch.state
                        yield status_event(intake, request, last)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                # A send turning late changes the page with no new event: render it then.
                late_in = _seconds_until(recheck_at(last, datetime.now(UTC), late_after(intake)))
                try:
                    await asyncio.wait_for(
                        watch.changed.wait(), min(KEEPALIVE_SECONDS, remaining, late_in)
                    )
                except TimeoutError:
                    if late_in <= KEEPALIVE_SECONDS and late_in <= remaining:
                        yield status_event(intake, request, last)
                    else:
                        yield ": keep-alive\n\n"
    finally:
        lease.release()


def _seconds_until(moment: datetime | None) -> float:
    """Seconds from now to `moment` (a little after, so it has passed); infinity if None."""
    if moment is None:
        return float("inf")
    return max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.5


def stream_key(intake: Intake, request: Request, token: str | None) -> str:
    """Whose streams count together under the per-token cap: the link's token, else the
    staff session, else the address."""
    if token:
        return f"link:{token[:512]}"
    session = read_session(intake, request).session
    return f"session:{session.sid}" if session else f"client:{client_of(request)}"


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
        # Counted before the log is read: a refused stream costs nothing.
        lease = intake.live.lease(
            token=stream_key(intake, request, token), client=client_of(request)
        )
    except LiveLimited as exc:
        log.warning("live.limited", incident=incident_id, which=exc.which)
        return Response(str(exc), 429, media_type="text/plain", headers={"Retry-After": "30"})
    try:
        incident = await viewable(intake, event_log, request, incident_id, token)
    except PageError as exc:
        lease.release()
        return Response(exc.key, exc.status, media_type="text/plain")
    except BaseException:
        lease.release()
        raise
    return StreamingResponse(
        status_stream(intake, request, incident, partial(project, event_log, incident_id), lease),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also here: a client gone before the stream started never runs the stream's `finally`.
        background=BackgroundTask(lease.release),
    )


# Follow-ups that tell everyone the danger is over, or that it is back: one stray tap must not
# send them. Each is offered (and confirmed) only in the state it applies to: the all-clear
# and "agents left" while the incident is open, "agents are back" once they left, and the
# reopening once it is resolved.
CONFIRMED_ACTIONS = {
    "resolve": "open",
    "agents_left": "open",
    "agents_back": "open",
    "reopen": "resolved",
}


def needs_confirming(values: dict[str, str], incident: IncidentState) -> bool:
    """Whether this follow-up form is a first press that must be confirmed before recording
    (a press that no longer applies, say All clear on a resolved incident, is not: recording
    it answers why not)."""
    action = values.get("action", "")
    return CONFIRMED_ACTIONS.get(action) == incident.status and values.get("confirm") != "yes"


def confirm_page(
    intake: Intake,
    request: Request,
    session: Session,
    incident: IncidentState,
    action: str,
    submission_id: str | None = None,
) -> HTMLResponse:
    """The second step of "All clear", "The agents have left", "The agents are back" or
    reopening: nothing is recorded yet. It carries the first step's submission id, so a
    double press of Yes records one update."""
    ctx = incident_context(intake, request, incident)
    return render(
        intake,
        request,
        "confirm.html",
        {**ctx, "action": action, "submission_id": submission_id or new_event_id()},
        session=session,
    )
