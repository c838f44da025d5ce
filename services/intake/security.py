"""Staff sessions, CSRF tokens, rate limits and security headers for the intake pages.

- A session is a signed cookie (HMAC-SHA256 with DOORALERT_SECRET_KEY): which school, which
  intake key (by its pseudonymous id, never the key), and when it expires. Rotating a school's
  key in district.yaml ends the sessions made with the old one.
- CSRF: a signed double-submit token. The token is `<nonce>.<mac>` with the mac over the
  session id and the nonce; it is both in a cookie and in each form, and a POST must carry the
  same token in both, signed for the current session.
- Rate limits: in-memory token buckets per school and per client address (one process; a
  fleet behind a load balancer would share them in NATS KV or at the proxy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.domain.directory import Directory, School

SESSION_COOKIE = "dooralert_session"
CSRF_COOKIE = "dooralert_csrf"
CSRF_FIELD = "csrf_token"

# Every HTML page: scripts and styles only from our own /static files, no framing, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\x1f{payload}".encode(), hashlib.sha256)
    return _b64(digest.digest())


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
    """A session cookie that was genuine but is past its expiry (or its key was rotated)."""


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


def encode_session(secret: str, session: Session) -> str:
    """The session as a signed cookie value."""
    payload = _b64(
        json.dumps(
            [session.sid, session.school_id, session.key_id, session.expires_at],
            separators=(",", ":"),
        ).encode()
    )
    return f"{payload}.{_mac(secret, 'session', payload)}"


def decode_session(
    secret: str, cookie: str | None, *, directory: Directory, now: float | None = None
) -> Session | None:
    """The session in a cookie; None if absent or forged. Raises SessionExpired when stale."""
    if not cookie:
        return None
    payload, sep, mac = cookie.partition(".")
    if not sep or not hmac.compare_digest(
        _mac(secret, "session", payload).encode(), mac.encode("utf-8", "replace")
    ):
        return None
    try:
        sid, school_id, kid, expires_at = json.loads(_unb64(payload))
        session = Session(str(sid), school_id, kid, int(expires_at))
    except (ValueError, TypeError):
        return None
    now = time.time() if now is None else now
    if now >= session.expires_at:
        raise SessionExpired
    if session.school_id is not None:
        school = directory.school(session.school_id)
        if school is None or not any(key_id(h) == session.key_id for h in school.intake_key_hashes):
            raise SessionExpired  # the school or its key was removed: sign in again
    return session


def csrf_token(secret: str, session: Session) -> str:
    """A fresh CSRF token signed for `session`."""
    nonce = secrets.token_urlsafe(12)
    return f"{nonce}.{_mac(secret, 'csrf', f'{session.sid}|{nonce}')}"


def csrf_valid(
    secret: str, session: Session | None, form_token: str | None, cookie_token: str | None
) -> bool:
    """Whether the form's and the cookie's CSRF tokens agree and are signed for `session`."""
    if session is None or not form_token or not cookie_token:
        return False
    if not hmac.compare_digest(
        form_token.encode("utf-8", "replace"), cookie_token.encode("utf-8", "replace")
    ):
        return False
    nonce, sep, mac = form_token.partition(".")
    if not sep:
        return False
    expected = _mac(secret, "csrf", f"{session.sid}|{nonce}")
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


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
