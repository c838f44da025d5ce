"""What request handlers are given (FastAPI dependencies): the shared `Intake` context, the
settings, directory and protocol, the event log and the staff session of the request."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Request

from services.domain.directory import Directory
from services.domain.i18n import text
from services.domain.protocol import Protocol
from services.domain.tokens import Keyring, ViewClaim, view_token
from services.eventlog.interface import EventLog
from services.intake.errors import LOG_FAILURES, ReportLimited, Unavailable
from services.intake.live import LiveHub
from services.intake.security import (
    SESSION_COOKIE,
    RateLimiter,
    Session,
    SessionExpired,
    decode_session,
    signed_in_id,
)
from services.intake.sessions import EndedSessions
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.intake")
T = TypeVar("T")


@dataclass(frozen=True)
class Intake:
    """What every handler shares, built once per app by `create_app` (on `app.state.intake`)."""

    settings: Settings
    directory: Directory
    protocol: Protocol
    school_limiter: RateLimiter
    client_limiter: RateLimiter
    signin_limiter: RateLimiter  # failed sign-ins, per (client address, school)
    auth_limiter: RateLimiter  # wrong or missing API keys, per client address
    report_limiter: RateLimiter  # new reports, per school
    live: LiveHub
    keys: Keyring  # signs sessions, CSRF tokens and links (DOORALERT_SECRET_KEYS)

    @classmethod
    def build(cls, settings: Settings, *, directory: Directory, protocol: Protocol) -> Intake:
        """The context for one app: its rate limiters start empty. Raises
        `InsecureSecretKey` when the secret key is missing, an example or too short."""
        return cls(
            keys=Keyring.of(settings.signing_keys()),
            settings=settings,
            directory=directory,
            protocol=protocol,
            school_limiter=RateLimiter(settings.rate_limit_school_per_minute),
            client_limiter=RateLimiter(settings.rate_limit_client_per_minute),
            signin_limiter=RateLimiter(settings.rate_limit_signin_per_minute),
            auth_limiter=RateLimiter(settings.rate_limit_auth_failures_per_minute),
            report_limiter=RateLimiter(settings.rate_limit_reports_per_minute),
            live=LiveHub(
                poll_seconds=settings.live_poll_seconds,
                per_token=settings.live_streams_per_token,
                per_client=settings.live_streams_per_client,
            ),
        )

    @property
    def phone(self) -> str | None:
        """The district's emergency number, named in refusals so nobody is left stuck."""
        return self.directory.district.emergency_phone

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies are marked Secure (by default: when served over https)."""
        if self.settings.cookie_secure is not None:
            return self.settings.cookie_secure
        return self.settings.base_url.startswith("https://")

    @property
    def timezone(self) -> tzinfo:
        """The district's time zone, in which staff enter times."""
        try:
            return ZoneInfo(self.directory.district.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # a bad zone in district.yaml: UTC
            return UTC

    def limit(self, *, school_id: str | None, client: str) -> float:
        """0 if this write may go ahead; else the seconds to wait (nothing is recorded)."""
        wait = self.client_limiter.take(client)
        if not wait and school_id is not None:
            wait = self.school_limiter.take(school_id)
        if wait:
            log.warning("intake.rate_limited", school=school_id)
        return wait

    def admit_report(self, school_id: str) -> None:
        """Take one of the school's new-report places; `ReportLimited` when none is left."""
        wait = self.report_limiter.take(school_id)
        if wait:
            log.warning("intake.report_limited", school=school_id)
            raise ReportLimited(wait)

    def report_limit_message(self, limited: ReportLimited, lang: str) -> str:
        """What a staff member reads when the report limit refuses: when to retry, whom to call."""
        call = (
            text("call.phone", lang, phone=self.phone) if self.phone else text("call.office", lang)
        )
        limit = f"{self.settings.rate_limit_reports_per_minute:g}"
        return text("error.report_rate", lang, limit=limit, seconds=limited.retry_after, call=call)

    def urls(self, incident_id: str, *, actor: str) -> dict[str, str]:
        """The incident's status (JSON) and page (HTML) links for the staff member `actor`
        who reported it: their own view token (notes shown), expiring like an alert's."""
        now = int(time.time())
        claim = ViewClaim(
            incident_id,
            recipient=actor,
            notification_id=None,
            notes=True,
            issued_at=now,
            expires_at=now + int(self.settings.view_link_days * 86400),
        )
        token = view_token(self.keys, claim)
        base = self.settings.base_url
        return {
            "status_url": f"{base}/api/v1/incidents/{incident_id}?token={token}",
            "page_url": f"{base}/incidents/{incident_id}?token={token}",
        }


def get_intake(request: Request) -> Intake:
    """The app's shared context."""
    intake: Intake = request.app.state.intake
    return intake


def get_settings(request: Request) -> Settings:
    """The service's settings."""
    return get_intake(request).settings


def get_directory(request: Request) -> Directory:
    """The district directory (schools, keys, contacts)."""
    return get_intake(request).directory


def get_protocol(request: Request) -> Protocol:
    """The district's protocol texts."""
    return get_intake(request).protocol


def get_event_log(request: Request) -> EventLog:
    """The event log the lifespan opened; before it has, the log is unreachable."""
    event_log: EventLog | None = getattr(request.app.state, "event_log", None)
    if event_log is None:
        raise Unavailable
    return event_log


@dataclass(frozen=True)
class CurrentSession:
    """The staff session a request's cookie carries (None: none or forged), and whether a
    genuine one had expired."""

    session: Session | None
    expired: bool = False


def get_ended_sessions(request: Request) -> EndedSessions:
    """The record of signed-out sessions the lifespan opened."""
    sessions: EndedSessions | None = getattr(request.app.state, "ended_sessions", None)
    if sessions is None:
        raise Unavailable
    return sessions


async def check_signed_out(request: Request) -> None:
    """Whether the request's session was signed out, looked up once per request before any
    handler (an app-wide dependency) so that `read_session` can stay synchronous."""
    sid = signed_in_id(get_intake(request).keys, request.cookies.get(SESSION_COOKIE))
    ended = False
    if sid is not None:
        try:
            ended = await get_ended_sessions(request).is_ended(sid)
        except LOG_FAILURES as exc:
            log.error("session.not_checked", error=type(exc).__name__)
            raise Unavailable from exc
    request.state.session_ended = ended


def read_session(intake: Intake, request: Request) -> CurrentSession:
    """The request's staff session (see `CurrentSession`)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    # Fail closed: a request the signed-out check did not see has no session.
    ended = getattr(request.state, "session_ended", True)
    try:
        return CurrentSession(
            decode_session(intake.keys, cookie, directory=intake.directory, ended=ended)
        )
    except SessionExpired:
        return CurrentSession(None, expired=True)


def get_session(request: Request) -> CurrentSession:
    """The staff session of the request (see `CurrentSession`)."""
    return read_session(get_intake(request), request)


def in_loop(dependency: Callable[[Request], T]) -> Callable[[Request], Awaitable[T]]:
    """`dependency` as a FastAPI dependency run in the event loop. FastAPI runs a plain
    function dependency in a worker thread: a thread hop (and a wake-up) per dependency per
    request, a third of intake's CPU per report for these attribute look-ups."""

    async def run(request: Request) -> T:
        return dependency(request)

    run.__name__ = run.__qualname__ = dependency.__name__
    run.__doc__ = dependency.__doc__
    return run


IntakeDep = Annotated[Intake, Depends(in_loop(get_intake))]
SettingsDep = Annotated[Settings, Depends(in_loop(get_settings))]
DirectoryDep = Annotated[Directory, Depends(in_loop(get_directory))]
ProtocolDep = Annotated[Protocol, Depends(in_loop(get_protocol))]
EventLogDep = Annotated[EventLog, Depends(in_loop(get_event_log))]
SessionDep = Annotated[CurrentSession, Depends(in_loop(get_session))]
EndedSessionsDep = Annotated[EndedSessions, Depends(in_loop(get_ended_sessions))]


def client_of(request: Request, *, missing: str = "unknown") -> str:
    """The client's address, the key of its rate limits (an IPv6 client: its /64 network,
    as one host holds a whole /64 and could otherwise step past every per-address limit)."""
    host = request.client.host if request.client else missing
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host
