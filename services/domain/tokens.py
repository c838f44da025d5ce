"""Signed capability tokens for links sent to responders (HMAC-SHA256, DOORALERT_SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: str, purpose: str, subject: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\x1f{subject}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def view_token(secret: str, incident_id: str) -> str:
    """A token that lets its holder read one incident's status page, and nothing else."""
    return _mac(secret, "view", incident_id)


def check_view_token(secret: str, incident_id: str, token: str | None) -> bool:
    """Whether `token` is this incident's view token (constant time)."""
    if not token:
        return False
    # Bytes, not str: compare_digest raises TypeError on a str with non-ASCII characters, and
    # the token comes straight from a URL.
    return hmac.compare_digest(view_token(secret, incident_id).encode(), token.encode())


# --- acknowledgement links ---------------------------------------------------------------

import json  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402


class TokenError(ValueError):
    """An acknowledgement link that is forged, altered, malformed or expired."""


@dataclass(frozen=True)
class AckClaim:
    incident_id: str
    school_id: str
    role: str
    contact_id: str
    notification_id: str
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ack_token(secret: str, claim: AckClaim) -> str:
    """`<payload>.<mac>`: bound to one incident, role, contact and notification; expiring."""
    payload = _b64(
        json.dumps(
            [
                claim.incident_id,
                claim.school_id,
                claim.role,
                claim.contact_id,
                claim.notification_id,
                claim.expires_at,
            ],
            separators=(",", ":"),
        ).encode()
    )
    mac = hmac.new(secret.encode(), b"ack\x1f" + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def read_ack_token(secret: str, token: str, *, now: datetime) -> AckClaim:
    """The claim an acknowledgement link's token carries; `TokenError` if it was altered,
    is malformed or has expired."""
    payload, sep, mac = token.partition(".")
    if not sep or not payload or not mac:
        raise TokenError("this link is not a dooralert acknowledgement link")
    expected = hmac.new(secret.encode(), b"ack\x1f" + payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise TokenError("this link has been altered") from None
    if not hmac.compare_digest(expected, given):
        raise TokenError("this link has been altered or was not issued by this district")
    try:
        fields = json.loads(_unb64(payload))
        claim = AckClaim(*fields)
    except (ValueError, TypeError):
        raise TokenError("this link is malformed") from None
    if now.timestamp() > claim.expires_at:
        raise TokenError("this link has expired; acknowledge by calling the district instead")
    return claim
