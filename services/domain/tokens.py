"""Signed tokens: status (view) links, acknowledgement links, staff sessions and CSRF tokens.

One `Keyring` (DOORALERT_SECRET_KEYS: the first key signs, every key verifies) signs them all
with itsdangerous (HMAC-SHA256), under a distinct salt per purpose, so a token made for one
purpose is refused for another. Expiry is inside the signed payload and checked against the
`now` the caller passes (pure code reads no clock). Tokens of the hand-rolled format before
itsdangerous are not accepted: links sent before the upgrade stop working.

Signing is on the notifier's path (two links per email), so `Keyring.sign` makes the bytes
`URLSafeSerializer.dumps` makes (tested) itself: one shared compact JSON encoder, and per
purpose the signing key's HMAC keyed once with itsdangerous's derived key (HMAC of the salt),
copied per token, instead of a new signer, a re-derived key and a new JSON encoder per link.
Verification stays itsdangerous's, trying every key of the keyring.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from itsdangerous import BadData, URLSafeSerializer

Purpose = Literal["view", "ack", "session", "csrf", "board"]
PURPOSES: tuple[Purpose, ...] = ("view", "ack", "session", "csrf", "board")


# itsdangerous's _CompactJSON: no spaces, non-ASCII kept (UTF-8).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class TokenError(ValueError):
    """A token that is forged, altered, malformed, expired, revoked or for something else."""


class TokenExpired(TokenError):
    """A genuine token past its expiry."""


@dataclass(frozen=True)
class Keyring:
    """The secret keys, newest (signing) first; every one of them verifies."""

    keys: tuple[str, ...] = field(repr=False)
    _serializers: dict[str, URLSafeSerializer] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _signing_macs: dict[str, hmac.HMAC] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")
        # itsdangerous signs with the LAST key of its list and tries all: newest last.
        newest_last = list(reversed(self.keys))
        for purpose in PURPOSES:
            serializer = URLSafeSerializer(
                newest_last,
                salt=f"dooralert.{purpose}",
                signer_kwargs={"digest_method": hashlib.sha256},
            )
            self._serializers[purpose] = serializer
            signer = serializer.make_signer()
            self._signing_macs[purpose] = hmac.new(signer.derive_key(), digestmod=hashlib.sha256)

    @classmethod
    def of(cls, keys: Sequence[str]) -> Keyring:
        """A keyring of `keys` (the first signs)."""
        return cls(tuple(keys))

    def sign(self, purpose: Purpose, payload: Any) -> str:
        """`payload` (JSON-able) as a URL-safe token signed for `purpose` with the first key."""
        # URLSafeSerializer.dump_payload: zlib-compressed (marked ".") when 2+ bytes shorter.
        raw = _COMPACT_JSON.encode(payload).encode("utf-8")
        packed = zlib.compress(raw)
        body = b"." + _b64(packed) if len(packed) < len(raw) - 1 else _b64(raw)
        mac = self._signing_macs[purpose].copy()
        mac.update(body)
        return (body + b"." + _b64(mac.digest())).decode("ascii")

    def unsign(self, purpose: Purpose, token: str | None) -> Any:
        """The payload of a token signed for `purpose` by any key; `TokenError` otherwise."""
        if not token:
            raise TokenError("no token")
        try:
            return self._serializers[purpose].loads(token)
        except (BadData, UnicodeError, ValueError):
            raise TokenError(
                "this link has been altered or was not issued by this district"
            ) from None


# --- status (view) links ------------------------------------------------------------------


@dataclass(frozen=True)
class ViewClaim:
    """Who a status link was made for and what it shows.

    `recipient` is a contact id (alerts) or the staff key's actor (`intake-key:<id>`), so a
    forwarded link can be traced to whom it was sent; `notification_id` names the message
    that carried it. `notes` is False for links sent to shared places (chat, webhooks): the
    page they open leaves staff notes out.
    """

    incident_id: str
    recipient: str
    notification_id: str | None
    notes: bool
    issued_at: int  # unix seconds
    expires_at: int  # unix seconds


def view_token(keys: Keyring, claim: ViewClaim) -> str:
    """A status link's token, bound to one incident and one recipient; expiring."""
    return keys.sign(
        "view",
        [
            claim.incident_id,
            claim.recipient,
            claim.notification_id,
            1 if claim.notes else 0,
            claim.issued_at,
            claim.expires_at,
        ],
    )


def read_view_token(
    keys: Keyring, token: str | None, *, incident_id: str, now: datetime
) -> ViewClaim:
    """The claim of a status link for `incident_id`; `TokenError` if forged, for another
    incident, or expired (revocation is the caller's: it is in the log)."""
    raw = keys.unsign("view", token)
    try:
        inc, recipient, nid, notes, issued, expires = raw
        claim = ViewClaim(str(inc), str(recipient), nid, bool(notes), int(issued), int(expires))
    except (ValueError, TypeError):
        raise TokenError("this link is malformed") from None
    if claim.incident_id != incident_id:
        raise TokenError("this link is for another incident")
    if now.timestamp() > claim.expires_at:
        raise TokenExpired("this link has expired")
    return claim


# --- acknowledgement links ---------------------------------------------------------------


@dataclass(frozen=True)
class AckClaim:
    incident_id: str
    school_id: str
    role: str
    contact_id: str
    notification_id: str
    expires_at: int  # unix seconds


def ack_token(keys: Keyring, claim: AckClaim) -> str:
    """An acknowledgement link's token: one incident, role, contact and notification; expiring."""
    return keys.sign(
        "ack",
        [
            claim.incident_id,
            claim.school_id,
            claim.role,
            claim.contact_id,
            claim.notification_id,
            claim.expires_at,
        ],
    )


def read_ack_token(keys: Keyring, token: str, *, now: datetime) -> AckClaim:
    """The claim an acknowledgement link's token carries; `TokenError` if it was altered,
    is malformed or has expired."""
    raw = keys.unsign("ack", token)
    try:
        inc, school, role, contact, nid, expires = raw
        claim = AckClaim(str(inc), str(school), str(role), str(contact), str(nid), int(expires))
    except (ValueError, TypeError):
        raise TokenError("this link is malformed") from None
    if now.timestamp() > claim.expires_at:
        raise TokenExpired("this link has expired; acknowledge by calling the district instead")
    return claim
