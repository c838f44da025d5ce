"""Rendering the staff pages: the template context every page gets (language, CSRF token,
who is signed in), the cookies set with it, and the error pages (every one in the reader's
language, the framework's own answers included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from services.intake import i18n
from services.intake.deps import Intake, read_session
from services.intake.domain.screen import WITHHELD_LOCATION
from services.intake.errors import ApiError, ReportInvalid
from services.intake.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
    csrf_token,
    csrf_valid,
    encode_session,
    new_session,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# The stored stand-in for a door held back by the privacy screen: pages say it in words.
TEMPLATES.env.globals["withheld_location"] = WITHHELD_LOCATION
ANONYMOUS_LIFETIME = 3600 * 12  # a session that only anchors CSRF tokens (not signed in)


class PageError(Exception):
    """A page refused: its status and the i18n key (with values) of the message shown."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def language(request: Request) -> tuple[str, bool]:
    """The page's language, and whether to remember it in a cookie."""
    return i18n.choose_language(
        request.query_params.get("lang"),
        request.cookies.get(i18n.LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def translations(lang: str) -> dict[str, Any]:
    """The template helpers that translate keys and label values in `lang`."""
    return {
        "lang": lang,
        "t": lambda key, **v: i18n.translate(lang, key, **v),
        "label": lambda value: i18n.label(value, lang),
    }


def set_session_cookies(
    intake: Intake, resp: Response, session: Session, csrf: str, *, lifetime: float | None
) -> None:
    """The session cookie (unless `lifetime` is None: unchanged) and the CSRF cookie."""
    if lifetime is not None:
        set_session_cookie(intake, resp, session, lifetime=lifetime)
    resp.set_cookie(
        CSRF_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=intake.secure_cookies,
        path="/",
        max_age=int(intake.settings.session_lifetime_seconds),
    )


def set_session_cookie(
    intake: Intake, resp: Response, session: Session, *, lifetime: float
) -> None:
    """The session cookie alone (a page rendered for `session` has set its CSRF cookie)."""
    resp.set_cookie(
        SESSION_COOKIE,
        encode_session(intake.keys, session),
        max_age=int(lifetime),
        httponly=True,
        samesite="strict",
        secure=intake.secure_cookies,
        path="/",
    )


def render(
    intake: Intake,
    request: Request,
    template: str,
    ctx: dict[str, Any],
    *,
    status: int = 200,
    session: Session | None = None,
) -> HTMLResponse:
    """A page with the shared context; a visitor without a session is given one, and every
    page carries a CSRF token valid for its session."""
    lang, remember = language(request)
    if session is None:
        session = read_session(intake, request).session
    anonymous = session is None or session.school_id is None
    new_cookie = session is None
    if session is None:
        session = new_session(school=None, key_hash=None, lifetime=ANONYMOUS_LIFETIME)
    token = request.cookies.get(CSRF_COOKIE) if not new_cookie else None
    if not token or not csrf_valid(intake.keys, session, token, token):
        token = csrf_token(intake.keys, session)
    school = intake.directory.school(session.school_id) if session.school_id else None
    resp = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            **translations(lang),
            "csrf": token,
            "csrf_field": CSRF_FIELD,
            "signed_in": school,
            "district": intake.directory.district,
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
            secure=intake.secure_cookies,
        )
    lifetime = ANONYMOUS_LIFETIME if anonymous else intake.settings.session_lifetime_seconds
    set_session_cookies(intake, resp, session, token, lifetime=lifetime if new_cookie else None)
    return resp


def error_page(
    intake: Intake,
    request: Request,
    exc: PageError,
    session: Session | None,
    *,
    back: tuple[str, str] | None = None,
) -> HTMLResponse:
    """The error page for a `PageError` (with Retry-After on a 429); its link leads `back`
    (address, catalogue key of the link's words), else to the form."""
    url, words = back or ("/", "error.go_back")
    resp = render(
        intake,
        request,
        "error.html",
        {
            "message_key": exc.key,
            "values": exc.values,
            "back_url": url,
            "back_key": words,
            # The other language of this page is the way back in it (the address that
            # failed may answer only a form's POST).
            "switch_url": f"{url}?lang={i18n.translate(language(request)[0], 'switch_lang')}",
        },
        status=exc.status,
        session=session,
    )
    if exc.status == 429 and "seconds" in exc.values:
        resp.headers["Retry-After"] = str(exc.values["seconds"])
    return resp


# What a page says for a status the framework answers itself (no such page, a method the
# route does not take, a request it cannot read, a bug) or a refusal without its own words.
STATUS_KEYS = {
    404: "error.page_not_found",
    405: "error.method",
    413: "error.request",
    422: "error.request",
    500: "error.internal",
}


def wants_page(request: Request) -> bool:
    """Whether an error is answered as a page in the reader's language (a browser asking for
    a page) rather than the API's JSON."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def status_page(request: Request, status: int, key: str | None = None) -> HTMLResponse:
    """The error page for an HTTP status (or a refusal's `key`), in the reader's language,
    saying whom to call when it may have cost a report."""
    intake: Intake = request.app.state.intake
    lang = language(request)[0]
    call = (
        i18n.translate(lang, "call.phone", phone=intake.phone)
        if intake.phone
        else i18n.translate(lang, "call.office")
    )
    exc = PageError(status, key or STATUS_KEYS.get(status, "error.request"), call=call)
    return error_page(intake, request, exc, read_session(intake, request).session)


def refusal_page(
    intake: Intake,
    request: Request,
    exc: ApiError | ReportInvalid,
    session: Session | None,
    *,
    incident_id: str,
) -> HTMLResponse:
    """A follow-up refused (the incident is over, a field not valid): in plain words, with
    the way back to the incident page."""
    if isinstance(exc, ApiError):
        error = PageError(exc.status, exc.key or STATUS_KEYS.get(exc.status, "error.request"))
    else:
        error = PageError(422, "error.followup_invalid")
    back = (f"/incidents/{incident_id}", "error.to_incident")
    return error_page(intake, request, error, session, back=back)
