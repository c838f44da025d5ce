"""Staff sessions, CSRF tokens, rate limits and security headers for the intake pages.

- A session is a signed cookie (the `session` purpose of the keyring, services/domain/tokens.py):
  its id, which school, which intake key (by its pseudonymous id, never the key), and when it
  expires. Rotating a school's key in district.yaml ends the sessions made with the old one;
  signing out ends one session (its id is recorded as ended: sessions.py).
- CSRF: a signed double-submit token (the `csrf` purpose) naming the session id and a nonce;
  it is both in a cookie and in each form, and a POST must carry the same token in both,
  signed for the current session.
- Rate limits: in-memory token buckets (one process; a fleet behind a load balancer would
  share them in NATS KV or at the proxy): writes per school and per client address, new
  reports per school, and failures only for sign-ins (per address and school) and API keys
  (per address), so a correct key is never refused. The client address is the TCP peer
  unless DOORALERT_TRUSTED_PROXIES names the proxy in front (services/cli/services.py).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.domain.directory import Directory, School
from services.domain.tokens import Keyring, TokenError

SESSION_COOKIE = "dooralert_session"
CSRF_COOKIE = "dooralert_csrf"
CSRF_FIELD = "csrf_token"

# Every HTML page: scripts and styles only from our own /static files, no framing, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def key_id(key_hash: str) -> str:
    """The pseudonymous id of an intake key, from its stored `sha256:<hex>` hash."""
    return key_hash.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class Session:
    """A staff session: its id (anchoring CSRF tokens), school, key id and expiry."""

    sid: str
    school_id: str | None  # None: not signed in yet (the session only anchors CSRF tokens)
    key_id: str | None
    expires_at: int

    @property
    def actor(self) -> str:
        return f"intake-key:{self.key_id}"


class SessionExpired(Exception):
    """A session cookie that was genuine but is past its expiry, signed out, or its key was
    rotated."""


def new_session(
    *, school: School | None, key_hash: str | None, lifetime: float, now: float | None = None
) -> Session:
    """A new session, signed in to `school` with the key of `key_hash` (or anonymous)."""
    now = time.time() if now is None else now
    return Session(
        sid=secrets.token_urlsafe(16),
        school_id=school.id if school else None,
        key_id=key_id(key_hash) if key_hash else None,
        expires_at=int(now + lifetime),
    )


def encode_session(keys: Keyring, session: Session) -> str:
    """The session as a signed cookie value."""
    return keys.sign(
        "session", [session.sid, session.school_id, session.key_id, session.expires_at]
    )


def signed_in_id(keys: Keyring, cookie: str | None) -> str | None:
    """The id of a genuine signed-in session cookie (expired or not); None if absent, forged
    or anonymous (an anonymous session only anchors CSRF tokens: there is nothing to end)."""
    try:
        sid, school_id = keys.unsign("session", cookie)[:2]
    except (TokenError, ValueError, TypeError):
        return None
    return sid if isinstance(sid, str) and school_id is not None else None


def decode_session(
    keys: Keyring,
    cookie: str | None,
    *,
    directory: Directory,
    ended: bool = False,
    now: float | None = None,
) -> Session | None:
    """The session in a cookie; None if absent or forged. Raises SessionExpired when stale,
    or when `ended` (its id is recorded as signed out)."""
    if not cookie:
        return None
    try:
        sid, school_id, kid, expires_at = keys.unsign("session", cookie)
        session = Session(str(sid), school_id, kid, int(expires_at))
    except (TokenError, ValueError, TypeError):
        return None
    now = time.time() if now is None else now
    if ended or now >= session.expires_at:
        raise SessionExpired
    if session.school_id is not None:
        school = directory.school(session.school_id)
        if school is None or not any(key_id(h) == session.key_id for h in school.intake_key_hashes):
            raise SessionExpired  # the school or its key was removed: sign in again
    return session


def csrf_token(keys: Keyring, session: Session) -> str:
    """A fresh CSRF token signed for `session`."""
    return keys.sign("csrf", [session.sid, secrets.token_urlsafe(12)])


def csrf_valid(
    keys: Keyring, session: Session | None, form_token: str | None, cookie_token: str | None
) -> bool:
    """Whether the form's and the cookie's CSRF tokens agree and are signed for `session`."""
    if session is None or not form_token or not cookie_token:
        return False
    if not hmac.compare_digest(
        form_token.encode("utf-8", "replace"), cookie_token.encode("utf-8", "replace")
    ):
        return False
    try:
        sid, _nonce = keys.unsign("csrf", form_token)
    except (TokenError, ValueError, TypeError):
        return False
    return bool(sid == session.sid)


# --- rate limits -----------------------------------------------------------------------------


class RateLimiter:
    """Token buckets: `per_minute` requests a minute per key, bursts up to `per_minute`.

    `per_minute <= 0` turns the limit off.
    """

    MAX_KEYS = 10_000

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = float(per_minute) / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when allowed (one token taken); otherwise the seconds until one is available."""
        if self.capacity <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._prune(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= self.MAX_KEYS:
            return
        # Drop buckets that have refilled: forgetting them changes nothing.
        full = [
            k
            for k, (t, last) in self._buckets.items()
            if t + (now - last) * self.rate >= self.capacity
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) > self.MAX_KEYS:
            # Still too many (many addresses at once): forget the longest idle, down to 90 %,
            # rather than grow without bound. Forgetting only ever lets someone in sooner.
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for k in by_age[: len(self._buckets) - self.MAX_KEYS * 9 // 10]:
                del self._buckets[k]


# --- headers on every response -----------------------------------------------------------------


class SecurityHeaders:
    """ASGI middleware: nosniff everywhere; CSP, no framing, no referrer on HTML pages."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                extra = [(b"x-content-type-options", b"nosniff")]
                if ctype.startswith((b"text/html", b"text/event-stream")):
                    extra += [
                        (b"content-security-policy", CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                        # Incident and ack URLs carry tokens: never leak them in Referer.
                        (b"referrer-policy", b"no-referrer"),
                        (b"cache-control", b"no-store"),
                    ]
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
