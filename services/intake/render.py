"""Rendering the staff pages: the template context every page gets (language, CSRF token,
who is signed in), the cookies set with it, and the error pages."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from services.intake import i18n
from services.intake.deps import Intake, read_session
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
    secure = intake.secure_cookies
    if lifetime is not None:
        resp.set_cookie(
            SESSION_COOKIE,
            encode_session(intake.keys, session),
            max_age=int(lifetime),
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )
    resp.set_cookie(
        CSRF_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
        max_age=int(intake.settings.session_lifetime_seconds),
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
    intake: Intake, request: Request, exc: PageError, session: Session | None
) -> HTMLResponse:
    """The error page for a `PageError` (with Retry-After on a 429)."""
    resp = render(
        intake,
        request,
        "error.html",
        {"message_key": exc.key, "values": exc.values},
        status=exc.status,
        session=session,
    )
    if exc.status == 429 and "seconds" in exc.values:
        resp.headers["Retry-After"] = str(exc.values["seconds"])
    return resp


def plain(message: str) -> str:
    """A minimal HTML page carrying one message (escaped)."""
    return (
        f"<!doctype html><html lang='en'><title>dooralert</title><main><p>{escape(message)}"
        "</p><p><a href='/'>dooralert</a></p></main></html>"
    )
