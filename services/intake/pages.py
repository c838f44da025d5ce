"""The staff pages: sign-in, the report form, the incident page with its live stream.

Thin: each handler checks the session, the CSRF token and the rate limits, converts the form
into the API's shapes and calls the same core functions the JSON API uses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from schemas.events import new_event_id
from schemas.report import Agency, Document, Entry, Purpose, SignedByJudge
from services.domain.directory import Directory, hash_intake_key
from services.domain.incident import IncidentState
from services.domain.protocol import Protocol
from services.domain.tokens import check_view_token
from services.intake import i18n
from services.intake.reports import ReportInvalid
from services.intake.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    RateLimiter,
    Session,
    SessionExpired,
    csrf_token,
    csrf_valid,
    decode_session,
    encode_session,
    new_session,
)
from services.runtime.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@dataclass(frozen=True)
class Core:
    """What the pages need from the intake service (the same functions the API uses)."""

    accept: Callable[..., Awaitable[tuple[str, bool]]]
    project: Callable[[str], Awaitable[IncidentState | None]]
    follow_up: Callable[..., Awaitable[str]]
    urls: Callable[[str], dict[str, str]]
    read_body: Callable[[Request], Awaitable[bytes]]
    limit: Callable[..., float]
    acknowledge: Callable[..., Awaitable[tuple[int, str, str | None]]]
    api_error: type[Exception]
    unavailable: type[Exception]


class PageError(Exception):
    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def install_pages(
    app: FastAPI, *, settings: Settings, directory: Directory, protocol: Protocol, core: Core
) -> None:
    secret = settings.secret_key.get_secret_value()
    signin_limiter = RateLimiter(settings.rate_limit_signin_per_minute)
    secure = (
        settings.cookie_secure
        if settings.cookie_secure is not None
        else settings.base_url.startswith("https://")
    )
    tz = _zone(directory.district.timezone)
    phone = directory.district.emergency_phone

    # --- request context -------------------------------------------------------------------

    def language(request: Request) -> tuple[str, bool]:
        return i18n.choose_language(
            request.query_params.get("lang"),
            request.cookies.get(i18n.LANG_COOKIE),
            request.headers.get("accept-language"),
        )

    def current_session(request: Request) -> tuple[Session | None, bool]:
        """(session, whether it expired)."""
        try:
            return decode_session(
                secret, request.cookies.get(SESSION_COOKIE), directory=directory
            ), False
        except SessionExpired:
            return None, True

    def render(
        request: Request,
        template: str,
        ctx: dict[str, Any],
        *,
        status: int = 200,
        session: Session | None = None,
        new_cookie: bool = False,
    ) -> HTMLResponse:
        lang, remember = language(request)
        if session is None:
            session = current_session(request)[0]
        anonymous = session is None or session.school_id is None
        if session is None:
            session = new_session(school=None, key_hash=None, lifetime=3600 * 12)
            new_cookie = True
        token = request.cookies.get(CSRF_COOKIE) if not new_cookie else None
        if not token or not csrf_valid(secret, session, token, token):
            token = csrf_token(secret, session)
        school = directory.school(session.school_id) if session.school_id else None
        resp = TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "lang": lang,
                "t": lambda key, **v: i18n.translate(lang, key, **v),
                "label": lambda value: i18n.label(value, lang),
                "csrf": token,
                "csrf_field": CSRF_FIELD,
                "signed_in": school,
                "district": directory.district,
                "switch_url": f"{request.url.path}?lang={i18n.translate(lang, 'switch_lang')}",
                **ctx,
            },
            status_code=status,
        )
        if remember:
            resp.set_cookie(
                i18n.LANG_COOKIE,
                lang,
                max_age=365 * 24 * 3600,
                httponly=True,
                samesite="strict",
                secure=secure,
            )
        if new_cookie:
            lifetime = 3600 * 12 if anonymous else settings.session_lifetime_seconds
            resp.set_cookie(
                SESSION_COOKIE,
                encode_session(secret, session),
                max_age=int(lifetime),
                httponly=True,
                samesite="strict",
                secure=secure,
                path="/",
            )
        resp.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
            max_age=int(settings.session_lifetime_seconds),
        )
        return resp

    def error_page(request: Request, exc: PageError, session: Session | None) -> HTMLResponse:
        resp = render(
            request,
            "error.html",
            {"message_key": exc.key, "values": exc.values},
            status=exc.status,
            session=session,
        )
        if exc.status == 429 and "seconds" in exc.values:
            resp.headers["Retry-After"] = str(exc.values["seconds"])
        return resp

    async def form_values(request: Request) -> dict[str, str]:
        body = await core.read_body(request)
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def same_origin(request: Request) -> bool:
        # Browsers mark every cross-site POST (Sec-Fetch-Site, Origin); refuse it outright.
        # With Referrer-Policy no-referrer, Chromium sends `Origin: null` on our own forms, so
        # "null" proves nothing either way: the CSRF token decides.
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if not origin or origin == "null":
            return True
        host = urlsplit(origin).netloc
        return host in (request.headers.get("host"), urlsplit(settings.base_url).netloc)

    def check_post(request: Request, values: dict[str, str], *, need_school: bool) -> Session:
        """The session of a form POST, its CSRF token checked; or a PageError."""
        session, expired = current_session(request)
        if expired:
            raise PageError(401, "signin.expired")
        if not same_origin(request) or not csrf_valid(
            secret, session, values.get(CSRF_FIELD), request.cookies.get(CSRF_COOKIE)
        ):
            raise PageError(403, "error.csrf")
        assert session is not None
        if need_school and session.school_id is None:
            raise PageError(401, "signin.expired")
        return session

    def rate_limit(request: Request, school_id: str) -> None:
        wait = core.limit(school_id=school_id, client=_client(request))
        if wait:
            raise PageError(
                429,
                "error.rate",
                seconds=int(wait) + 1,
                phone=phone or i18n.translate(language(request)[0], "form.law_department"),
            )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    # --- sign in / out ----------------------------------------------------------------------

    def signin_page(
        request: Request,
        *,
        status: int = 200,
        error: str | None = None,
        school_id: str | None = None,
    ) -> HTMLResponse:
        return render(
            request,
            "signin.html",
            {
                "schools": directory.schools,
                "error": error,
                "school_id": school_id,
                "days": int(settings.session_lifetime_seconds // 86400) or 1,
            },
            status=status,
        )

    @app.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request) -> Response:
        values = await form_values(request)
        session, _ = current_session(request)
        if not same_origin(request) or not csrf_valid(
            secret, session, values.get(CSRF_FIELD), request.cookies.get(CSRF_COOKIE)
        ):
            return error_page(request, PageError(403, "error.csrf"), None)
        wait = signin_limiter.take(_client(request))
        if wait:
            return error_page(
                request,
                PageError(429, "error.rate", seconds=int(wait) + 1, phone=phone or "-"),
                session,
            )
        school_id = values.get("school_id", "")
        school = directory.school_for_key(values.get("intake_key", "").strip())
        if school is None or school.id != school_id:
            return signin_page(request, status=401, error="signin.bad_key", school_id=school_id)
        fresh = new_session(
            school=school,
            key_hash=hash_intake_key(values["intake_key"].strip()),
            lifetime=settings.session_lifetime_seconds,
        )
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            encode_session(secret, fresh),
            max_age=int(settings.session_lifetime_seconds),
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )
        resp.set_cookie(
            CSRF_COOKIE,
            csrf_token(secret, fresh),
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
            max_age=int(settings.session_lifetime_seconds),
        )
        return resp

    @app.post("/signout", response_class=HTMLResponse)
    async def signout(request: Request) -> Response:
        values = await form_values(request)
        try:
            check_post(request, values, need_school=False)
        except PageError as exc:
            return error_page(request, exc, None)
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        resp.delete_cookie(CSRF_COOKIE, path="/")
        return resp

    # --- the report form ----------------------------------------------------------------------

    def form_page(
        request: Request,
        session: Session,
        *,
        values: dict[str, str],
        errors: dict[str, str],
        status: int = 200,
        banner: str | None = None,
    ) -> HTMLResponse:
        lang = language(request)[0]
        return render(
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
            },
            status=status,
            session=session,
        )

    def defaults() -> dict[str, str]:
        return {
            "entry": "kept_outside",
            "agent_count": "1",
            "purpose": "unspecified",
            "signed_by_judge": "unsure",
            "occurred_time": datetime.now(tz).strftime("%H:%M"),
        }

    @app.get("/", response_class=HTMLResponse)
    async def form(request: Request) -> HTMLResponse:
        session, expired = current_session(request)
        if session is None or session.school_id is None:
            return signin_page(request, error="signin.expired" if expired else None)
        return form_page(request, session, values=defaults(), errors={})

    @app.post("/report", response_class=HTMLResponse)
    async def submit_form(request: Request) -> Response:
        values = await form_values(request)
        lang = language(request)[0]
        try:
            session = check_post(request, values, need_school=True)
            assert session.school_id is not None
            if values.get("school_id", session.school_id) != session.school_id:
                raise PageError(403, "error.other_school")
            rate_limit(request, session.school_id)
        except PageError as exc:
            if exc.key == "signin.expired":
                return signin_page(request, status=401, error=exc.key)
            return error_page(request, exc, None)
        try:
            raw = report_from_form(
                values, school_id=session.school_id, tz=tz, now=datetime.now(UTC)
            )
            incident_id, _ = await core.accept(
                raw,
                school=directory.school(session.school_id),
                actor=session.actor,
                idempotency_key=values.get("submission_id") or None,
            )
        except ReportInvalid as exc:
            errors = {f["field"]: _reason(f["reason"], lang) for f in exc.fields}
            return form_page(
                request,
                session,
                values=values,
                errors=errors,
                status=422,
                banner=i18n.translate(lang, "form.fix"),
            )
        except core.unavailable:
            msg = i18n.translate(
                lang, "form.unavailable", phone=phone or i18n.translate(lang, "form.law_department")
            )
            return form_page(request, session, values=values, errors={}, status=503, banner=msg)
        except core.api_error as exc:
            return form_page(
                request, session, values=values, errors={}, status=exc.status, banner=exc.message
            )  # type: ignore[attr-defined]
        return RedirectResponse(core.urls(incident_id)["page_url"], status_code=303)

    # --- the incident page --------------------------------------------------------------------

    async def viewable(request: Request, incident_id: str, token: str | None) -> IncidentState:
        """The incident, if the link's token or a session of its school allows reading it."""
        by_token = check_view_token(secret, incident_id, token)
        session, _ = current_session(request)
        if not by_token and (session is None or session.school_id is None):
            raise PageError(401, "signin.expired")
        incident = await core.project(incident_id)
        if incident is None:
            raise PageError(404, "error.not_found")
        if not by_token and session is not None and session.school_id != incident.school_id:
            raise PageError(403, "error.other_school")
        return incident

    def incident_context(request: Request, incident: IncidentState) -> dict[str, Any]:
        lang = language(request)[0]
        school = directory.school(incident.school_id)
        token = check_view_token(secret, incident.incident_id, request.query_params.get("token"))
        return {
            "incident": incident,
            "school_name": school.name if school else incident.school_id,
            "names": {c.id: c.name for c in directory.contacts},
            "protocol": protocol.text(incident.report.document, lang) if incident.report else "",
            "always": protocol.always_text(lang),
            "documents": list(Document),
            "signed_choices": list(SignedByJudge),
            "events_url": f"/incidents/{incident.incident_id}/events"
            + (f"?token={request.query_params['token']}" if token else ""),
        }

    @app.get("/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident_page(
        incident_id: str, request: Request, token: str | None = None
    ) -> HTMLResponse:
        session, _ = current_session(request)
        try:
            incident = await viewable(request, incident_id, token)
        except PageError as exc:
            return error_page(request, exc, session)
        ctx = incident_context(request, incident)
        can_follow_up = session is not None and session.school_id == incident.school_id
        return render(
            request, "incident.html", {**ctx, "can_follow_up": can_follow_up}, session=session
        )

    @app.get("/incidents/{incident_id}/events")
    async def incident_events(
        incident_id: str, request: Request, token: str | None = None
    ) -> Response:
        """Server-sent events: the status fragment, sent again whenever the projection changes."""
        try:
            incident = await viewable(request, incident_id, token)
        except PageError as exc:
            return Response(exc.key, exc.status, media_type="text/plain")
        template = TEMPLATES.get_template("_status.html")

        def fragment(state: IncidentState) -> str:
            lang = language(request)[0]
            html = template.render(
                {
                    **incident_context(request, state),
                    "lang": lang,
                    "t": lambda key, **v: i18n.translate(lang, key, **v),
                    "label": lambda value: i18n.label(value, lang),
                }
            )
            data = json.dumps(
                {"event_count": state.event_count, "status": state.status, "html": html}
            )
            return f"event: status\nid: {state.event_count}\ndata: {data}\n\n"

        async def stream() -> AsyncIterator[str]:
            last = incident
            yield "retry: 2000\n\n" + fragment(last)
            deadline = asyncio.get_running_loop().time() + settings.live_max_seconds
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(settings.live_poll_seconds)
                if await request.is_disconnected():
                    return
                try:
                    state = await core.project(incident_id)
                except core.unavailable:
                    yield ": log unreachable\n\n"
                    continue
                if state is not None and state != last:
                    last = state
                    yield fragment(state)
                else:
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post("/incidents/{incident_id}/followup", response_class=HTMLResponse)
    async def followup_form(incident_id: str, request: Request) -> Response:
        values = await form_values(request)
        session, _ = current_session(request)
        action = values.get("action", "")
        try:
            session = check_post(request, values, need_school=True)
            incident = await core.project(incident_id)
            if incident is None:
                raise PageError(404, "error.not_found")
            if incident.school_id != session.school_id:
                raise PageError(403, "error.other_school")
            rate_limit(request, incident.school_id)
            if action == "resolve":
                await core.follow_up(incident, session.actor, {}, resolve=True)
            elif action == "agents_left":
                await core.follow_up(incident, session.actor, {"entry": "left"}, resolve=False)
            elif action == "document":
                change = {k: values[k] for k in ("document", "signed_by_judge") if values.get(k)}
                await core.follow_up(incident, session.actor, change, resolve=False)
            else:
                raise ReportInvalid([{"field": "action", "reason": "unknown action"}])
        except PageError as exc:
            return error_page(request, exc, session)
        except core.api_error as exc:
            return HTMLResponse(_plain(exc.message), exc.status)  # type: ignore[attr-defined]
        except ReportInvalid as exc:
            return HTMLResponse(_plain(str(exc)), 422)
        return RedirectResponse(core.urls(incident_id)["page_url"], status_code=303)

    # --- acknowledgement links (responders: no session; the link's token is the secret) ------

    def ack_page(request: Request, token: str, status: int, message: str) -> HTMLResponse:
        return render(
            request,
            "ack.html",
            {"token": token, "status": status, "message": message},
            status=200 if status in (200, 202) else status,
        )

    @app.get("/ack/{token}", response_class=HTMLResponse)
    async def ack_confirm(token: str, request: Request) -> HTMLResponse:
        # A GET never acknowledges: mail scanners follow links.
        status, message, _ = await core.acknowledge(token, via="link", record=False)
        return ack_page(request, token, status, message)

    @app.post("/ack/{token}", response_class=HTMLResponse)
    async def ack_record(token: str, request: Request) -> HTMLResponse:
        # No session or CSRF cookie here: the unguessable signed token in the URL is what a
        # forger would lack. A cross-site POST is still refused by its Origin.
        if not same_origin(request):
            return error_page(request, PageError(403, "error.csrf"), None)
        status, message, _ = await core.acknowledge(token, via="link", record=True)
        return ack_page(request, token, status, message)


def _plain(message: str) -> str:
    from html import escape

    return (
        f"<!doctype html><html lang='en'><title>dooralert</title><main><p>{escape(message)}"
        "</p><p><a href='/'>dooralert</a></p></main></html>"
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - an unknown zone in district.yaml: show UTC
        return UTC


def _reason(reason: str, lang: str) -> str:
    return i18n.translate(lang, "reason.required") if reason == "required" else reason


def report_from_form(
    values: dict[str, str], *, school_id: str, tz: Any, now: datetime
) -> dict[str, Any]:
    """The form's fields as the API's JSON report (pure). The time is local to the district."""
    skip = {CSRF_FIELD, "submission_id", "occurred_time", "intake_key"}
    raw: dict[str, Any] = {k: v for k, v in values.items() if k not in skip}
    raw["school_id"] = school_id
    if raw.get("notes", "") == "":
        raw.pop("notes", None)
    clock = values.get("occurred_time", "").strip()
    if clock:
        try:
            hhmm = time.fromisoformat(clock)
        except ValueError:
            raise ReportInvalid([{"field": "occurred_time", "reason": "use HH:MM"}]) from None
        local_now = now.astimezone(tz)
        at = datetime.combine(local_now.date(), hhmm, tzinfo=tz)
        if at > local_now + timedelta(minutes=5):
            at -= timedelta(days=1)  # 23:50 entered at 00:05 means yesterday
        raw["occurred_at"] = at.astimezone(UTC).isoformat()
    return raw
