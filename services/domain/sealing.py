"""Sealed notes (pure): staff free text is stored in the log only encrypted, under the
incident's data key, so destroying or expiring the key forgets it everywhere (crypto-shredding)
while the log's bytes, and so the ledger, stay as they were.

AES-256-GCM; the associated data binds a sealed blob to its incident, its event and its field:
a blob copied onto another event or field does not open. No I/O here: keys come in, and the
nonce is drawn by the caller's `nonce` source (default `os.urandom`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.events import SealedText

ALG = "A256GCM"
KEY_BYTES = 32
NONCE_BYTES = 12


class NotesUnavailable(Exception):
    """A sealed note cannot be opened: no key (forgotten or expired), or it was tampered with."""


@dataclass(frozen=True)
class DataKey:
    """An incident's data key: `kid` names it in sealed blobs; `created_at` starts its retention."""

    kid: str
    secret: bytes
    created_at: datetime

    def expired(self, now: datetime, retention: timedelta) -> bool:
        """Whether the key has outlived its retention (the KV's own expiry may lag)."""
        return now >= self.created_at + retention


def new_key(
    incident_id: str, *, now: datetime, random: Callable[[int], bytes] = os.urandom
) -> DataKey:
    """A fresh data key for `incident_id`."""
    kid = f"{incident_id}.{now:%Y%m%dT%H%M%SZ}"
    return DataKey(kid=kid, secret=random(KEY_BYTES), created_at=now)


def associated_data(incident_id: str, event_id: str, field: str) -> bytes:
    """incident id ‖ event id ‖ field name, each ended by 0x1F (ids are tokens and UUIDs)."""
    return "".join(f"{part}\x1f" for part in (incident_id, event_id, field)).encode()


def seal(
    text: str,
    key: DataKey,
    *,
    incident_id: str,
    event_id: str,
    field: str,
    random: Callable[[int], bytes] = os.urandom,
) -> SealedText:
    """`text` sealed under `key`, bound to that incident, event and field."""
    nonce = random(NONCE_BYTES)
    ct = AESGCM(key.secret).encrypt(
        nonce, text.encode(), associated_data(incident_id, event_id, field)
    )
    return SealedText(alg=ALG, kid=key.kid, nonce=_b64(nonce), ct=_b64(ct))


def open_sealed(
    sealed: SealedText,
    key: DataKey | None,
    *,
    incident_id: str,
    event_id: str,
    field: str,
    now: datetime,
    retention: timedelta,
) -> str:
    """The clear text of `sealed`; raises `NotesUnavailable` when it cannot be had."""
    if key is None or key.kid != sealed.kid:
        raise NotesUnavailable("the incident's notes key is gone")
    if key.expired(now, retention):
        raise NotesUnavailable("the incident's notes key has expired")
    try:
        clear = AESGCM(key.secret).decrypt(
            base64.b64decode(sealed.nonce, validate=True),
            base64.b64decode(sealed.ct, validate=True),
            associated_data(incident_id, event_id, field),
        )
    except (InvalidTag, ValueError) as exc:
        raise NotesUnavailable("the sealed note does not open: altered or moved") from exc
    return clear.decode()


def encode_key(key: DataKey) -> bytes:
    """The key as stored in the KV bucket."""
    return f"{key.kid}\n{_b64(key.secret)}\n{key.created_at.isoformat()}".encode()


def decode_key(raw: bytes) -> DataKey:
    """A key read back from the KV bucket (ValueError when it is not one)."""
    kid, secret, created = raw.decode().split("\n")
    value = base64.b64decode(secret, validate=True)
    if len(value) != KEY_BYTES:
        raise ValueError("a notes key must be 32 bytes")
    return DataKey(kid=kid, secret=value, created_at=datetime.fromisoformat(created))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
