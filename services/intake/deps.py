"""What request handlers are given (FastAPI dependencies): the shared `Intake` context, the
settings, directory and protocol, the event log and the staff session of the request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Request

from services.domain.directory import Directory
from services.domain.protocol import Protocol
from services.domain.tokens import view_token
from services.eventlog.interface import EventLog
from services.intake.errors import Unavailable
from services.intake.security import (
    SESSION_COOKIE,
    RateLimiter,
    Session,
    SessionExpired,
    decode_session,
)
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.intake")


@dataclass(frozen=True)
class Intake:
    """What every handler shares, built once per app by `create_app` (on `app.state.intake`)."""

    settings: Settings
    directory: Directory
    protocol: Protocol
    school_limiter: RateLimiter
    client_limiter: RateLimiter
    signin_limiter: RateLimiter

    @classmethod
    def build(cls, settings: Settings, *, directory: Directory, protocol: Protocol) -> Intake:
        """The context for one app: its rate limiters start empty."""
        return cls(
            settings=settings,
            directory=directory,
            protocol=protocol,
            school_limiter=RateLimiter(settings.rate_limit_school_per_minute),
            client_limiter=RateLimiter(settings.rate_limit_client_per_minute),
            signin_limiter=RateLimiter(settings.rate_limit_signin_per_minute),
        )

    @property
    def secret(self) -> str:
        """The key that signs sessions, CSRF tokens and links."""
        return self.settings.secret_key.get_secret_value()

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

    def urls(self, incident_id: str) -> dict[str, str]:
        """The incident's status (JSON) and page (HTML) links, each carrying its view token."""
        token = view_token(self.secret, incident_id)
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


def read_session(intake: Intake, request: Request) -> CurrentSession:
    """The request's staff session (see `CurrentSession`)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    try:
        return CurrentSession(decode_session(intake.secret, cookie, directory=intake.directory))
    except SessionExpired:
        return CurrentSession(None, expired=True)


def get_session(request: Request) -> CurrentSession:
    """The staff session of the request (see `CurrentSession`)."""
    return read_session(get_intake(request), request)


IntakeDep = Annotated[Intake, Depends(get_intake)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DirectoryDep = Annotated[Directory, Depends(get_directory)]
ProtocolDep = Annotated[Protocol, Depends(get_protocol)]
EventLogDep = Annotated[EventLog, Depends(get_event_log)]
SessionDep = Annotated[CurrentSession, Depends(get_session)]


def client_of(request: Request, *, missing: str = "unknown") -> str:
    """The client's address, the key of its rate limit."""
    return request.client.host if request.client else missing
