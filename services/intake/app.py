"""The intake HTTP service: assembles the routers (api, acks, pages, incident pages, health),
the error answers and the lifespan that opens the event log."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client
from nats.errors import Error as NatsError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.domain.directory import Directory
from services.domain.protocol import load_protocol
from services.eventlog.connection import connect, new_guard
from services.eventlog.interface import EventLog
from services.eventlog.jetstream import JetStreamEventLog
from services.eventlog.notekeys import JetStreamNoteKeys
from services.intake import acks, api, board, health, held, incident_pages, metering, pages
from services.intake.deps import Intake, check_signed_out, get_intake
from services.intake.errors import ApiError, ReportInvalid, Unavailable
from services.intake.notes import IntakeNotes, memory_notes
from services.intake.render import status_page, wants_page
from services.intake.security import SecurityHeaders
from services.intake.sessions import EndedSessions, JetStreamEndedSessions, MemoryEndedSessions
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.intake")
STATIC = Path(__file__).parent / "static"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the event log for the app's life: the one given to `create_app`, else JetStream
    on a new NATS connection (drained at shutdown)."""
    given: EventLog | None = app.state.given_event_log
    if given is not None:
        app.state.event_log = given
        app.state.ended_sessions = app.state.given_sessions or MemoryEndedSessions()
        app.state.notes = memory_notes(app.state.intake.settings.notes_retention_days)
        yield
        return
    settings: Settings = app.state.intake.settings
    port = metering.health_server(settings, connected=lambda: _connected(app))
    await port.start()
    try:
        async with _on_nats(app, settings):
            yield
    finally:
        await port.close()


def _connected(app: FastAPI) -> bool:
    nc: Client | None = getattr(app.state, "nats", None)
    return bool(nc and nc.is_connected)


@asynccontextmanager
async def _on_nats(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    attempts = settings.nats_reconnect_attempts
    guard = new_guard(settings.nats_url, "dooralert-intake", attempts=attempts)
    # A connection lost for good stops the server (the `intake` command exits non-zero).
    guard.stop = lambda: _stop_serving(app)
    app.state.nats_guard = guard
    nc = await connect(settings.nats_url, name="dooralert-intake", guard=guard)
    app.state.nats = nc
    try:
        app.state.ended_sessions = await JetStreamEndedSessions.open(nc.jetstream())
    except Exception:
        # Without it signing out could not end a session: refuse to serve, say what to do.
        log.error("intake.no_sessions_bucket", hint="run `dooralert provision`")
        guard.closing_now()
        await nc.close()
        raise
    try:
        keys = await JetStreamNoteKeys.open(
            nc.jetstream(), retry_for=settings.publish_retry_seconds
        )
    except Exception:
        # Without it notes could only be dropped or stored in clear: refuse to serve instead.
        log.error("intake.no_note_keys_bucket", hint="run `dooralert provision`")
        guard.closing_now()
        await nc.close()
        raise
    notes = IntakeNotes.with_keys_ahead(keys, timedelta(days=settings.notes_retention_days))
    app.state.notes = notes
    app.state.event_log = JetStreamEventLog(
        nc.jetstream(),
        publish_timeout=settings.publish_timeout_seconds,
        retry_for=settings.publish_retry_seconds,
    )
    log.info("intake.started", url=settings.base_url)
    monitor = health.start_monitor(app, nc.jetstream(), settings)
    try:
        yield
    finally:
        await monitor.close()
        if notes.ahead is not None:
            await notes.ahead.close()
        app.state.event_log = app.state.nats = None
        guard.closing_now()
        if guard.lost is not None:
            # Draining needs a live connection; closing may fail flushing what it held
            # (OSError on asyncio's loop, RuntimeError on uvloop's closed transport).
            with suppress(OSError, RuntimeError, NatsError):
                await nc.close()
        elif not nc.is_closed:
            await nc.drain()


def _stop_serving(app: FastAPI) -> None:
    stop = getattr(app.state, "stop_serving", None)
    if stop is not None:
        stop()


# FastAPI's own OpenTelemetry (0.165+) is off, whatever providers or OTEL_* variables the
# process finds: its request spans and logs carry the URL, and intake's URLs hold incident ids
# and signed status-link tokens, which must not leave for a collector nobody reviewed (the
# service's own metrics are the Prometheus ones, without them). Off, it is also no longer
# asked per request whether a provider was configured (~2% of intake's CPU per report).
NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    settings: Settings,
    *,
    directory: Directory,
    event_log: EventLog | None = None,
    ended_sessions: EndedSessions | None = None,
) -> FastAPI:
    """The intake app. It connects to NATS in its lifespan, unless given an `event_log`
    (tests: a fake; then /healthz reports no NATS connection, and signed-out sessions are
    kept in memory unless `ended_sessions` is given). Raises `InsecureSecretKey` without a
    proper secret key."""
    app = FastAPI(
        title="dooralert intake",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(check_signed_out)],
        **NO_TELEMETRY,
    )
    app.state.intake = Intake.build(
        settings, directory=directory, protocol=load_protocol(settings.config_dir)
    )
    app.state.given_event_log = event_log
    app.state.given_sessions = ended_sessions
    for module in (health, api, acks, pages, held, incident_pages, board):
        app.include_router(module.router)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(metering.CountReports)
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if wants_page(request):
        return status_page(request, exc.status, exc.key)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 429:
        headers = {"Retry-After": str(exc.extra.get("retry_after", 60))}
    return JSONResponse({"error": exc.message, **exc.extra}, exc.status, headers=headers)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ReportInvalid)
    if wants_page(request):
        return status_page(request, 422)
    return JSONResponse({"error": "invalid report", "fields": exc.fields}, 422)


async def _unavailable(request: Request, _: Exception) -> Response:
    if wants_page(request):
        return status_page(request, 503, "error.unavailable")
    phone = get_intake(request).phone
    msg = "the event log is unreachable; nothing was recorded. Call the law department"
    return JSONResponse({"error": msg + (f" at {phone}" if phone else "")}, 503)


async def _request_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if wants_page(request):
        return status_page(request, 422)
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
    ]
    return JSONResponse({"error": "invalid request", "fields": fields}, 422)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if wants_page(request):
        # A browser that asked for a page gets one, in its language (never JSON in English).
        return status_page(request, exc.status_code)
    return JSONResponse({"error": exc.detail}, exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not the log: say so (nothing about the log), keep the traceback in the log only.
    log.exception("intake.unexpected_error", path=request.url.path, error=type(exc).__name__)
    if wants_page(request):
        with suppress(Exception):  # the page itself failing: the JSON answer below
            return status_page(request, 500)
    return JSONResponse({"error": "internal error; nothing may have been recorded"}, 500)


def install_error_handlers(app: FastAPI) -> None:
    """The JSON answer for each error the intake raises, and a logged 500 for anything else."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ReportInvalid, _invalid)
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
