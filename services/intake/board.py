"""The district board: every school's open incidents on one live page, for district staff
(law, safety, leadership) signed in with a district board key.

A board key (`district.board_key_hashes` in district.yaml, stored as hashes like school intake
keys) gives a signed cookie of its own (the keyring's `board` purpose, path /board), separate
from staff sessions: a board viewer cannot report, and a school's staff cannot see the board.
Removing a key from district.yaml ends the sign-ins made with it. The page works without
JavaScript (it refreshes itself every `REFRESH_SECONDS`); with it, server-sent events replace
the list whenever the shared feed (board_feed.py) sees a change.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from services.domain.board import DEFAULT_WINDOW, board_text
from services.domain.board_pass import (
    BoardPass,
    key_id,
    new_pass,
    pass_cookie,
    read_link,
    read_pass,
)
from services.domain.tokens import TokenError, TokenExpired, ViewClaim, view_token
from services.eventlog.interface import EventLog
from services.intake import i18n
from services.intake.board_feed import BoardFeed
from services.intake.bodies import form_values
from services.intake.deps import Intake, IntakeDep, SessionDep, client_of
from services.intake.errors import Unavailable
from services.intake.forms import csrf_ok
from services.intake.live import Lease, LiveLimited
from services.intake.render import TEMPLATES, PageError, error_page, language, render
from services.intake.security import CSRF_FIELD
from services.runtime.logging import get_logger

router = APIRouter()
log = get_logger("dooralert.intake")

BOARD_COOKIE = "dooralert_board"
REFRESH_SECONDS = 30  # without JavaScript the page reloads itself this often
KEEPALIVE_SECONDS = 15.0


def current_pass(intake: Intake, request: Request) -> tuple[BoardPass | None, bool]:
    """The request's board sign-in, and whether a genuine one had ended."""
    cookie = request.cookies.get(BOARD_COOKIE)
    return read_pass(intake.keys, cookie, directory=intake.directory, now=time.time())


def signed_in(intake: Intake, board_pass: BoardPass, resp: Response) -> Response:
    """`resp` with the board sign-in cookie set."""
    resp.set_cookie(
        BOARD_COOKIE,
        pass_cookie(intake.keys, board_pass),
        max_age=max(0, int(board_pass.expires_at - time.time())),
        httponly=True,
        # Lax, not strict: a board link opened from an e-mail is a cross-site navigation,
        # and its redirect must carry the cookie. The board only reads; its one form (leave)
        # is CSRF-checked.
        samesite="lax",
        secure=intake.secure_cookies,
        path="/board",
    )
    return resp


def get_feed(request: Request) -> BoardFeed:
    """The app's one board feed (made on first use)."""
    feed: BoardFeed | None = getattr(request.app.state, "board_feed", None)
    if feed is None:
        app = request.app

        def event_log() -> EventLog:
            found: EventLog | None = getattr(app.state, "event_log", None)
            if found is None:
                raise Unavailable
            return found

        feed = BoardFeed(
            event_log,
            window=DEFAULT_WINDOW,
            poll_seconds=request.app.state.intake.settings.live_poll_seconds,
        )
        app.state.board_feed = feed
    return feed


def words(lang: str) -> Callable[..., str]:
    """The board's `t()`: its own sentences, else the shared catalogue's."""

    def t(key: str, **values: object) -> str:
        own = board_text(key, lang, **values)
        return own if own is not None else i18n.translate(lang, key, **values)

    return t


def incident_link(intake: Intake, board_pass: BoardPass, incident_id: str) -> str:
    """The incident page for a board viewer: a status link of its own (traced to the board
    key, without staff notes, ending with the sign-in; revocable like any status link)."""
    claim = ViewClaim(
        incident_id,
        recipient=board_pass.recipient,
        notification_id=None,
        notes=False,
        issued_at=int(time.time()),
        expires_at=board_pass.expires_at,
    )
    return f"/incidents/{incident_id}?token={view_token(intake.keys, claim)}"


def board_context(
    intake: Intake, request: Request, feed: BoardFeed, board_pass: BoardPass
) -> dict[str, Any]:
    """What the board page and its live fragment show."""
    lang = language(request)[0]
    zone = intake.timezone
    schools = {s.id: s.name for s in intake.directory.schools}

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    rows = feed.rows()
    return {
        "t": words(lang),
        "roles": lambda names: ", ".join(i18n.label(n, lang) for n in names),
        "rows": rows,
        "waiting_count": sum(1 for r in rows if r.waiting),
        "schools": schools,
        "names": {c.id: c.name_in(lang) for c in intake.directory.contacts},
        "local": local,
        "link": lambda incident_id: incident_link(intake, board_pass, incident_id),
        "updated": local(datetime.now(UTC)),
        "unreachable": feed.unreachable,
        "days": DEFAULT_WINDOW.days,
    }


def _signin(
    intake: Intake, request: Request, *, status: int, error: str | None = None
) -> HTMLResponse:
    t = words(language(request)[0])
    return render(intake, request, "board_signin.html", {"t": t, "error": error}, status=status)


@router.get("/board", response_class=HTMLResponse)
async def board_page(request: Request, intake: IntakeDep, token: str | None = None) -> Response:
    if token is not None:
        return _open_link(intake, request, token)
    board_pass, ended = current_pass(intake, request)
    if board_pass is None:
        # Asked to sign in, as the report form does (200: a form to fill is not an error).
        error = "board.signin.expired" if ended else None
        return _signin(intake, request, status=200, error=error)
    feed = get_feed(request)
    await feed.refresh()
    ctx = board_context(intake, request, feed, board_pass)
    return render(intake, request, "board.html", {**ctx, "refresh_seconds": REFRESH_SECONDS})


@router.post("/board/signin", response_class=HTMLResponse)
async def board_signin(request: Request, intake: IntakeDep, current: SessionDep) -> Response:
    values = await form_values(request, max_bytes=intake.settings.max_report_bytes)
    if not csrf_ok(intake, request, current.session, values.get(CSRF_FIELD)):
        return error_page(intake, request, PageError(403, "error.csrf"), None)
    key = values.get("board_key", "").strip()
    stored = intake.directory.board_key_hash(key) if key else None
    if stored is None:
        # Only failures count, per address: a correct key is never refused.
        wait = intake.signin_limiter.take(f"{client_of(request)}|board")
        if wait:
            lang = language(request)[0]
            phone = intake.phone or i18n.translate(lang, "form.law_department")
            error = PageError(429, "error.rate", seconds=int(wait) + 1, phone=phone)
            return error_page(intake, request, error, current.session)
        log.warning("board.signin_refused")
        return _signin(intake, request, status=401, error="board.signin.bad_key")
    lifetime = intake.settings.session_lifetime_seconds
    board_pass = new_pass("key", key_id(stored), now=time.time(), lifetime=lifetime)
    log.info("board.signed_in", key=board_pass.ident)
    return signed_in(intake, board_pass, RedirectResponse("/board", status_code=303))


def _open_link(intake: Intake, request: Request, token: str) -> Response:
    """A contact's board link: exchanged for a sign-in (so the link leaves the address bar),
    or the sign-in page saying why it did not open."""
    try:
        contact_id = read_link(intake.keys, token, directory=intake.directory, now=time.time())
    except TokenExpired:
        return _signin(intake, request, status=410, error="board.link.expired")
    except TokenError:
        return _signin(intake, request, status=401, error="board.link.invalid")
    lifetime = intake.settings.session_lifetime_seconds
    board_pass = new_pass("contact", contact_id, now=time.time(), lifetime=lifetime)
    log.info("board.signed_in", contact=contact_id)
    return signed_in(intake, board_pass, RedirectResponse("/board", status_code=303))


@router.post("/board/signout", response_class=HTMLResponse)
async def board_signout(request: Request, intake: IntakeDep, current: SessionDep) -> Response:
    values = await form_values(request, max_bytes=intake.settings.max_report_bytes)
    if not csrf_ok(intake, request, current.session, values.get(CSRF_FIELD)):
        return error_page(intake, request, PageError(403, "error.csrf"), None)
    resp = RedirectResponse("/board", status_code=303)
    resp.delete_cookie(BOARD_COOKIE, path="/board")
    return resp


def board_event(intake: Intake, request: Request, feed: BoardFeed, board_pass: BoardPass) -> str:
    """One server-sent `status` event: the board's list rendered now (the incident page's
    script replaces `#live` with it)."""
    lang = language(request)[0]
    ctx = {
        **board_context(intake, request, feed, board_pass),
        "lang": lang,
        "label": _labeler(lang),
    }
    html = TEMPLATES.get_template("_board.html").render(ctx)
    data = json.dumps({"event_count": feed.version, "status": "open", "html": html})
    return f"event: status\nid: {feed.version}\ndata: {data}\n\n"


def _labeler(lang: str) -> Callable[[object], str]:
    return lambda value: i18n.label(value, lang)


async def board_stream(
    intake: Intake, request: Request, feed: BoardFeed, lease: Lease, board_pass: BoardPass
) -> AsyncIterator[str]:
    """The board now, then again on every change the shared feed sees, until the sign-in or
    `live_max_seconds` ends (the browser then reconnects, and is asked to sign in again)."""
    try:
        yield "retry: 2000\n\n" + board_event(intake, request, feed, board_pass)
        loop = asyncio.get_running_loop()
        lasts = min(intake.settings.live_max_seconds, board_pass.expires_at - time.time())
        deadline = loop.time() + lasts
        async with feed.watching():
            seen = feed.version
            while True:
                changed = feed.changed
                if feed.version != seen:
                    seen = feed.version
                    yield board_event(intake, request, feed, board_pass)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(changed.wait(), min(KEEPALIVE_SECONDS, remaining))
                except TimeoutError:
                    yield ": keep-alive\n\n"
    finally:
        lease.release()


@router.get("/board/events")
async def board_events(request: Request, intake: IntakeDep) -> Response:
    """Server-sent events: the board's list, sent again whenever it changes."""
    board_pass, _ = current_pass(intake, request)
    if board_pass is None:
        return Response("board.signin.expired", 401, media_type="text/plain")
    try:
        lease = intake.live.lease(token=f"board:{board_pass.nonce}", client=client_of(request))
    except LiveLimited as exc:
        log.warning("live.limited", board=True, which=exc.which)
        return Response(str(exc), 429, media_type="text/plain", headers={"Retry-After": "30"})
    feed = get_feed(request)
    await feed.refresh()
    return StreamingResponse(
        board_stream(intake, request, feed, lease, board_pass),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(lease.release),
    )
