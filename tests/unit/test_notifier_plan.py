"""Channel fallback order, the fallback request, the webhook signature and classification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import NotificationFailedData, NotificationRequestedData, parse_event
from services.domain.directory import Contact
from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError
from services.notifier.plan import fallback_request, next_channel
from services.notifier.webhook import classify_http, encode_body, sign, verify
from tests.fixtures.notifier_support import request

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
BOTH = Contact.model_validate(
    {
        "id": "c",
        "name": "C",
        "channels": [
            {"type": "email", "address": "a@b.example"},
            {"type": "webhook", "url": "http://h/x"},
        ],
    }
)
EMAIL = Contact.model_validate(
    {"id": "c", "name": "C", "channels": [{"type": "email", "address": "a@b.example"}]}
)


def test_next_channel_follows_the_contacts_order_then_runs_out() -> None:
    assert next_channel(BOTH, "email") == "webhook"
    assert next_channel(BOTH, "webhook") is None
    assert next_channel(EMAIL, "email") is None
    assert next_channel(None, "email") is None  # unknown contact: unreachable


def test_the_fallback_request_is_deterministic_and_points_at_the_failed_one() -> None:
    req = request("inc-1", "c")
    a, b = (
        fallback_request(req, "webhook", now=NOW),
        fallback_request(req, "webhook", now=NOW + timedelta(1)),
    )
    assert a.id == b.id and a.data.notification_id == b.data.notification_id
    assert a.data.fallback_of == req.data.notification_id
    assert a.data.notification_id != req.data.notification_id
    assert (a.data.channel, a.data.contact_id, a.data.role) == ("webhook", "c", "law")
    assert a.causation_id == req.id and a.source == "notifier"


def test_stored_v1_events_without_the_new_fields_still_parse() -> None:
    req = request("inc-1", "c")
    raw = json.loads(req.model_dump_json())
    del raw["data"]["fallback_of"]
    assert parse_event(json.dumps(raw)).data.fallback_of is None  # type: ignore[attr-defined]
    failed = NotificationFailedData.model_validate(
        {
            "notification_id": "n",
            "role": "law",
            "contact_id": "c",
            "channel": "email",
            "attempt": 1,
            "permanent": True,
            "reason": "550",
        }
    )
    assert failed.contact_unreachable is False
    assert NotificationRequestedData.model_fields["fallback_of"].default is None


def test_a_receiver_accepts_a_signed_fresh_body_and_refuses_tampering_or_replay() -> None:
    ts = int(NOW.timestamp())
    body = encode_body({"incident_id": "inc-1", "timestamp": ts})
    headers = {"X-Dooralert-Signature": sign("k", body), "X-Dooralert-Timestamp": str(ts)}
    assert headers["X-Dooralert-Signature"].startswith("sha256=")
    assert verify("k", body, headers, now=NOW)
    assert not verify("other", body, headers, now=NOW)
    assert not verify("k", body.replace(b"inc-1", b"inc-2"), headers, now=NOW)
    assert not verify("k", body, {**headers, "X-Dooralert-Timestamp": str(ts + 1)}, now=NOW)
    assert not verify("k", body, headers, now=NOW + timedelta(minutes=6))  # a replay


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_server_errors_timeouts_and_rate_limits_are_retried(status: int) -> None:
    assert isinstance(classify_http(status, "x"), TransientDeliveryError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_client_errors_are_permanent(status: int) -> None:
    assert isinstance(classify_http(status, "x"), PermanentDeliveryError)


@pytest.mark.parametrize(
    "exc", [__import__("httpx").ConnectError("refused"), __import__("httpx").ReadTimeout("slow")]
)
async def test_connection_errors_and_timeouts_are_retried(exc: Exception) -> None:
    import httpx

    from services.notifier.webhook import post_webhook

    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    async with httpx.AsyncClient(transport=httpx.MockTransport(boom)) as client:
        with pytest.raises(TransientDeliveryError):
            await post_webhook(
                client, "http://h/x", {"delivery_id": "d"}, secret="k", now=NOW, timeout=1.0
            )
