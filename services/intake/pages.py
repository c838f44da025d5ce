"""The staff pages: sign-in and sign-out, the report form and the follow-up buttons.

Thin: each handler checks the session, the CSRF token and the rate limits, converts the form
into the API's shapes and calls the same functions the JSON API uses (incidents.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from schemas.events import new_event_id
from schemas.report import Agency, Document, Entry, Purpose, SignedByJudge
from services.domain.directory import hash_intake_key
from services.domain.screening import looks_like, screen_fields
from services.eventlog.interface import EventLog
from services.intake import i18n
from services.intake.bodies import form_values
from services.intake.deps import (
    EndedSessionsDep,
    EventLogDep,
    Intake,
    IntakeDep,
    SessionDep,
    client_of,
)
from services.intake.domain.idempotency import check_submission_id
from services.intake.domain.screen import HeldBack, hold_back
from services.intake.errors import (
    LOG_FAILURES,
    ApiError,
    ReportInvalid,
    ReportLimited,
    Unavailable,
)
from services.intake.forms import (
    OTHER_DOOR,
    carried,
    check_post,
    csrf_ok,
    field_message,
    follow_up_from_form,
    form_defaults,
    only_changed,
    page_limit,
    report_from_form,
    same_origin,
)
from services.intake.held import held_page
from services.intake.incident_pages import confirm_page, needs_confirming
from services.intake.incidents import project, record_follow_up, submit_report
from services.intake.notes import get_notes
from services.intake.render import (
    PageError,
    error_page,
    language,
    refusal_page,
    render,
    set_session_cookie,
    set_session_cookies,
)
from services.intake.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
    csrf_token,
    new_session,
)
from services.intake.signin_view import CARRY_BYTES, last_school, signin_page
from services.runtime.logging import get_logger

log = get_logger("dooralert.intake")
router = APIRouter()


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request, intake: IntakeDep, current: SessionDep, event_log: EventLogDep
) -> Response:
    max_bytes = intake.settings.max_report_bytes + CARRY_BYTES
    values = await form_values(request, max_bytes=max_bytes)
    report = carried(values)
    if values.get("switch_page") and report and same_origin(intake, request):
        # The language button of a sign-in page carrying a report: the same page in the
        # other language (its `?lang=`), the report still carried; nothing checked or sent.
        key = "signin.kept_form" if report.get("switch_lang") else "signin.kept"
        school_id = last_school(intake, request)
        return signin_page(intake, request, error=key, school_id=school_id, report=report)
    if not csrf_ok(intake, request, current.session, values.get(CSRF_FIELD)):
        if report and same_origin(intake, request):
            # The sign-in page itself went stale: ask again, the report still kept.
            return signin_page(intake, request, status=403, error="error.csrf", report=report)
        return error_page(intake, request, PageError(403, "error.csrf"), None)
    school_id = values.get("school_id", "")
    key = values.get("intake_key", "").strip()
    school = intake.directory.school_for_key(key) if key else None
    if school is None or school.id != school_id:
        # Only failures count, per (address, school): others behind a school's NAT getting
        # it wrong never lock out a correct key (keys are random, >=128 bits: unguessable).
        known = school_id if intake.directory.school(school_id) else "?"
        wait = intake.signin_limiter.take(f"{client_of(request)}|{known}")
        if wait:
            lang = language(request)[0]
            phone = intake.phone or i18n.translate(lang, "form.law_department")
            error = PageError(429, "error.rate", seconds=int(wait) + 1, phone=phone)
            if report:
                return signin_page(
                    intake, request, status=429, error=error, school_id=school_id, report=report
                )
            return error_page(intake, request, error, current.session)
        return signin_page(
            intake, request, status=401, error="signin.bad_key", school_id=school_id, report=report
        )
    lifetime = intake.settings.session_lifetime_seconds
    fresh = new_session(school=school, key_hash=hash_intake_key(key), lifetime=lifetime)
    if report:
        resp = await _carried_on(intake, request, event_log, fresh, report)
        if not isinstance(resp, RedirectResponse):
            # A page rendered for the new session carries its CSRF token and cookie already.
            set_session_cookie(intake, resp, fresh, lifetime=lifetime)
            return resp
    else:
        resp = RedirectResponse("/", status_code=303)
    set_session_cookies(intake, resp, fresh, csrf_token(intake.keys, fresh), lifetime=lifetime)
    return resp


async def _carried_on(
    intake: Intake, request: Request, event_log: EventLog, session: Session, report: dict[str, str]
) -> Response:
    """A report carried through the sign-in page, the key now given: the form again (it
    came from the language button), or the report sent as if Send had just been pressed."""
    if report.get("switch_lang"):
        return form_page(intake, request, session, values=report, errors={})
    return await _limited_send(intake, request, event_log, session, report)


@router.post("/signout", response_class=HTMLResponse)
async def signout(request: Request, intake: IntakeDep, ended: EndedSessionsDep) -> Response:
    values = await form_values(request, max_bytes=intake.settings.max_report_bytes)
    try:
        session = check_post(intake, request, values, need_school=False)
    except PageError as exc:
        return error_page(intake, request, exc, None)
    if session.school_id is not None:
        # Recorded before the cookie is dropped: a copy of the cookie (another browser, a
        # stolen one) stops working too, on every intake instance.
        try:
            await ended.end(session.sid, expires_at=session.expires_at)
        except LOG_FAILURES as exc:
            log.error("session.not_ended", error=type(exc).__name__)
            return error_page(intake, request, PageError(503, "signout.unavailable"), session)
        log.info("session.ended", school=session.school_id)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    resp.delete_cookie(CSRF_COOKIE, path="/")
    return resp


def form_page(
    intake: Intake,
    request: Request,
    session: Session,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    banner: str | None = None,
) -> HTMLResponse:
    """The report form, with the values given and each field's error."""
    lang = language(request)[0]
    protocol = intake.protocol
    school = intake.directory.school(session.school_id) if session.school_id else None
    return render(
        intake,
        request,
        "form.html",
        {
            "values": values,
            "errors": errors,
            "banner": banner,
            "submission_id": values.get("submission_id") or new_event_id(),
            "choices": {
                "agency_stated": list(Agency),
                "document": list(Document),
                "signed_by_judge": list(SignedByJudge),
                "purpose": list(Purpose),
                "entry": list(Entry),
            },
            "protocol": protocol.all(lang),
            "always": protocol.always_text(lang),
            "doors": school.doors if school else [],
            "other_door": OTHER_DOOR,
        },
        status=status,
        session=session,
    )


@router.get("/", response_class=HTMLResponse)
async def form(request: Request, intake: IntakeDep, current: SessionDep) -> HTMLResponse:
    session = current.session
    if session is None or session.school_id is None:
        error = "signin.expired" if current.expired else None
        return signin_page(intake, request, error=error)
    defaults = form_defaults(intake.timezone, now=datetime.now(UTC))
    return form_page(intake, request, session, values=defaults, errors={})


def _checked_report_post(intake: Intake, request: Request, values: dict[str, str]) -> Session:
    """The signed-in session of a report POST for its own school."""
    session = check_post(intake, request, values, need_school=True)
    assert session.school_id is not None
    if values.get("school_id", session.school_id) != session.school_id:
        raise PageError(403, "error.other_school")
    return session


# A report POST refused for these keeps the report: the sign-in page carries it along.
SIGN_IN_AGAIN = ("signin.expired", "error.csrf")


@router.post("/report", response_class=HTMLResponse)
async def submit_form(request: Request, intake: IntakeDep, event_log: EventLogDep) -> Response:
    values = await form_values(request, max_bytes=intake.settings.max_report_bytes)
    try:
        session = _checked_report_post(intake, request, values)
    except PageError as exc:
        if exc.key in SIGN_IN_AGAIN and same_origin(intake, request):
            # The session expired, was signed out, or its cookies were cleared (or the token
            # belongs to an older session): nothing typed is lost. The sign-in page carries
            # the entries and sends them once the school's key is given; the key, which a
            # forging site does not have, is what makes the POST count (CSRF).
            key = "signin.kept_form" if values.get("switch_lang") else "signin.kept"
            return signin_page(
                intake,
                request,
                status=exc.status,
                error=key,
                school_id=last_school(intake, request),
                report=values,
            )
        return error_page(intake, request, exc, None)
    if values.get("switch_lang"):
        # The language button of the form: the same entries again in the other language
        # (the `?lang=` of its formaction picks and remembers it); nothing is sent (nor
        # counted by the rate limits).
        return form_page(intake, request, session, values=values, errors={})
    return await _limited_send(intake, request, event_log, session, values)


async def _limited_send(
    intake: Intake, request: Request, event_log: EventLog, session: Session, values: dict[str, str]
) -> Response:
    """The report within the pages' rate limit; over it, the form again (nothing lost)."""
    assert session.school_id is not None
    try:
        page_limit(intake, request, session.school_id)
    except PageError as exc:
        lang = language(request)[0]
        banner = i18n.translate(lang, exc.key, **exc.values)
        page = form_page(
            intake, request, session, values=values, errors={}, status=exc.status, banner=banner
        )
        page.headers["Retry-After"] = str(exc.values.get("seconds", 60))
        return page
    return await _send_form(intake, request, event_log, session, values)


async def _send_form(
    intake: Intake, request: Request, event_log: EventLog, session: Session, values: dict[str, str]
) -> Response:
    """Record the report form's report; the incident page, else the form with what to fix."""
    lang = language(request)[0]
    assert session.school_id is not None
    school = intake.directory.school(session.school_id)
    assert school is not None  # the session was checked against the directory
    now = datetime.now(UTC)

    again = partial(form_page, intake, request, session, values=values)
    submission_id = values.get("submission_id") or None
    if check_submission_id(submission_id):
        # A tampered hidden field: offer the same report again under a fresh id.
        fresh = {k: v for k, v in values.items() if k != "submission_id"}
        banner = i18n.translate(lang, "error.submission")
        return form_page(
            intake, request, session, values=fresh, errors={}, status=400, banner=banner
        )

    held: list[HeldBack] = []
    try:
        raw = report_from_form(values, school_id=school.id, tz=intake.timezone, now=now)
        # Never delays the alert: refused free text is held back and the report goes now.
        raw, held = hold_back(raw)
        incident_id, _ = await submit_report(
            event_log,
            raw,
            school=school,
            actor=session.actor,
            idempotency_key=submission_id,
            now=now,
            admit=partial(intake.admit_report, school.id),
            notes=get_notes(request),
        )
    except ReportLimited as exc:
        # The same submission id stays in the form: sending it again later is not a duplicate.
        page = again(errors={}, status=429, banner=intake.report_limit_message(exc, lang))
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except ReportInvalid as exc:
        errors = {f["field"]: field_message(f["field"], values, lang) for f in exc.fields}
        errors.update({h.field: looks_like(h.kinds, lang) for h in held})
        return again(status=422, banner=i18n.translate(lang, "form.fix"), errors=errors)
    except Unavailable:
        phone = intake.phone or i18n.translate(lang, "form.law_department")
        return again(
            errors={}, status=503, banner=i18n.translate(lang, "form.unavailable", phone=phone)
        )
    except ApiError as exc:
        words = i18n.translate(lang, exc.key or "error.request")
        return again(errors={}, status=exc.status, banner=words)
    if held:
        return held_page(intake, request, session, incident_id=incident_id, held=held)
    return RedirectResponse(
        intake.urls(incident_id, actor=session.actor)["page_url"], status_code=303
    )


@router.post("/incidents/{incident_id}/followup", response_class=HTMLResponse)
async def followup_form(
    incident_id: str,
    request: Request,
    intake: IntakeDep,
    current: SessionDep,
    event_log: EventLogDep,
) -> Response:
    values = await form_values(request, max_bytes=intake.settings.max_report_bytes)
    session = current.session
    try:
        session = check_post(intake, request, values, need_school=True)
        incident = await project(event_log, incident_id)
        if incident is None:
            raise PageError(404, "error.not_found")
        if incident.school_id != session.school_id:
            raise PageError(403, "error.other_school")
        submission_id = values.get("submission_id") or None
        if check_submission_id(submission_id):
            submission_id = None  # not one the page made: the update is recorded as new
        if needs_confirming(values, incident):
            return confirm_page(intake, request, session, incident, values["action"], submission_id)
        page_limit(intake, request, incident.school_id)
        reopen = values.get("action") == "reopen"
        change, resolve = ({}, False) if reopen else follow_up_from_form(values)
        if values.get("action") == "document":
            change = only_changed(change, incident.report)
            if not change:  # the details as already recorded: nothing to tell anyone
                page_url = intake.urls(incident_id, actor=session.actor)["page_url"]
                return RedirectResponse(page_url, status_code=303)
        if still := screen_fields(change).get("notes"):
            # Nothing is recorded; the text goes back to its writer only, to edit again.
            text = values.get("notes", "")
            return held_page(
                intake,
                request,
                session,
                incident_id=incident_id,
                text=text,
                again=still,
                status=422,
                submission_id=submission_id,
            )
        await record_follow_up(
            event_log,
            incident,
            session.actor,
            change,
            resolve=resolve,
            reopen=reopen,
            notes=get_notes(request),
            # A double press, or the page sent again (reload, Back), records one update.
            submission_id=submission_id,
        )
    except PageError as exc:
        return error_page(intake, request, exc, session)
    except (ApiError, ReportInvalid) as exc:
        return refusal_page(intake, request, exc, session, incident_id=incident_id)
    return RedirectResponse(
        intake.urls(incident_id, actor=session.actor)["page_url"], status_code=303
    )
