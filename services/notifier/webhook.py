"""The webhook channel: a signed JSON alert POSTed to the contact's URL.

The body names the incident, never a person: no contact details, no report notes (webhooks
often land in chat rooms). Receivers verify it like this:

    expected = "sha256=" + hmac_sha256(secret, raw_body).hexdigest()
    compare_digest(expected, request.headers["X-Dooralert-Signature"])
    abs(now - body["timestamp"]) <= 300          # the signed timestamp stops replays
    body["delivery_id"] not seen before          # and a redelivery is recognisable

`X-Dooralert-Timestamp` repeats the signed `timestamp` so it can be checked before parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from services.notifier.channels import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    scrub,
)

SIGNATURE_HEADER = "X-Dooralert-Signature"
TIMESTAMP_HEADER = "X-Dooralert-Timestamp"
DELIVERY_HEADER = "X-Dooralert-Delivery"
REPLAY_WINDOW_SECONDS = 300


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the exact body bytes>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    body: bytes,
    headers: dict[str, str],
    *,
    now: datetime,
    window: float = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver does: signature valid, signed timestamp fresh, header matches body."""
    lower = {k.lower(): v for k, v in headers.items()}
    if not hmac.compare_digest(
        sign(secret, body).encode(), lower.get(SIGNATURE_HEADER.lower(), "").encode()
    ):
        return False
    try:
        ts = int(json.loads(body)["timestamp"])
    except (ValueError, KeyError, TypeError):
        return False
    if lower.get(TIMESTAMP_HEADER.lower()) != str(ts):
        return False
    return abs(now.timestamp() - ts) <= window


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact body bytes that are signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def classify_http(status: int, text: str) -> DeliveryError:
    """5xx, 408 and 429 may pass later; every other 4xx will not."""
    reason = f"HTTP {status} {text}"
    if status >= 500 or status in (408, 429):
        return TransientDeliveryError(reason)
    return PermanentDeliveryError(reason)


async def post_webhook(
    client: httpx.AsyncClient,
    url: str,
    payload: Mapping[str, Any],
    *,
    secret: str,
    now: datetime,
    timeout: float,
) -> str:
    """POST the signed payload; return `HTTP <status>` or raise DeliveryError."""
    ts = int(now.timestamp())
    body = encode_body({**payload, "timestamp": ts})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "dooralert-notifier",
        SIGNATURE_HEADER: sign(secret, body),
        TIMESTAMP_HEADER: str(ts),
        DELIVERY_HEADER: str(payload.get("delivery_id", "")),
    }
    try:
        resp = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"webhook timed out: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise TransientDeliveryError(f"webhook unreachable: {type(exc).__name__}: {exc}") from None
    except (httpx.InvalidURL, ValueError) as exc:
        raise PermanentDeliveryError(
            f"webhook URL in district.yaml is invalid: {type(exc).__name__}"
        ) from None
    if 200 <= resp.status_code < 300:
        return scrub(f"HTTP {resp.status_code}")
    if 300 <= resp.status_code < 400:
        # Redirects are not followed: a signed alert goes only where the directory says.
        raise PermanentDeliveryError(f"HTTP {resp.status_code} redirect not followed")
    raise classify_http(resp.status_code, resp.reason_phrase or "")
