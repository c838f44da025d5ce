"""The delivery plan (what goes to whom on which channel), channel fallback order, the
fallback request, the webhook signature and classification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.envelope import originating
from schemas.events import (
    NotificationFailedData,
    NotificationRequested,
    NotificationRequestedData,
    PatternDetected,
    PatternDetectedData,
    parse_event,
    serialize_event,
)
from services.domain.directory import Contact, Directory
from services.domain.incident import fold
from services.domain.tokens import ViewClaim, read_view_token
from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError
from services.notifier.outcome import fallback_request, next_channel
from services.notifier.plan import (
    AppriseDelivery,
    Delivery,
    EmailDelivery,
    Found,
    PlanSettings,
    WebhookDelivery,
    plan_delivery,
)
from services.notifier.webhook import classify_http, encode_body, sign, verify
from tests.fixtures.notifier_support import encounter, request, test_directory
from tests.support import TEST_KEYS

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


# --- the delivery plan ------------------------------------------------------------------------

HOOKS = "http://hooks.example"
PLAN = PlanSettings(
    base_url="https://dooralert.example",
    sender="dooralert <alerts@dooralert.invalid>",
    ack_link_days=7,
    keys=TEST_KEYS,
)
NOTES = "Two agents asked for the office."


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    return test_directory(tmp_path, HOOKS)


def plan(req: NotificationRequested, found: Found, directory: Directory) -> Delivery:
    return plan_delivery(req, found, directory=directory, settings=PLAN, now=NOW)


def reported(**overrides: Any) -> Found:
    # The notes as main.py opened them from their seal (chat and webhook must leave them out).
    return Found(report=encounter("inc-1", notes=NOTES, **overrides), notes=NOTES)


def text_of(delivery: Delivery) -> str:
    assert isinstance(delivery, EmailDelivery)
    body = delivery.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_an_email_alert_goes_to_the_contacts_address_with_an_ack_link(
    directory: Directory,
) -> None:
    delivery = plan(request("inc-1", "law-dept"), reported(), directory)
    assert isinstance(delivery, EmailDelivery)
    assert delivery.message["To"] == "law@district.example"
    assert "https://dooralert.example/ack/" in text_of(delivery)
    assert NOTES in text_of(delivery)


def test_a_follow_up_has_no_ack_link_and_shows_the_report_as_it_stands(
    directory: Directory,
) -> None:
    state = fold([encounter("inc-1", notes=NOTES, location="Gym door")])
    req = request("inc-1", "law-dept", kind="update")
    text = text_of(plan(req, Found(report=reported().report, state=state), directory))
    assert "/ack/" not in text
    assert "Gym door" in text


def test_a_door_of_the_school_is_named_in_the_recipients_language(directory: Directory) -> None:
    # district.yaml: hamline's `{en: Gym door, es: Puerta del gimnasio}`, stored in English.
    found = reported(location="Gym door")
    spanish = text_of(
        plan(request("inc-1", "liaison-hamline", role="family_liaison"), found, directory)
    )
    english = text_of(plan(request("inc-1", "law-dept"), found, directory))
    assert "Puerta del gimnasio" in spanish and "Gym door" not in spanish
    assert "Gym door" in english
    # A location typed by hand (not one of the doors) is shown as typed, in every language.
    typed = reported(location="Side gate by the bus loop")
    liaison = request("inc-1", "liaison-hamline", role="family_liaison")
    assert "Side gate by the bus loop" in text_of(plan(liaison, typed, directory))


def test_a_webhook_gets_the_incident_with_its_kind_but_no_ack_link_notes_or_person(
    directory: Directory,
) -> None:
    req = request("inc-1", "hook-only", role="safety", channel="webhook", kind="escalation")
    delivery = plan(req, reported(), directory)
    assert isinstance(delivery, WebhookDelivery)
    assert delivery.url == f"{HOOKS}/hook-only"
    body = json.dumps(dict(delivery.payload))
    assert delivery.payload["kind"] == "escalation"
    assert delivery.payload["type"] == "dooralert.alert"
    assert "/incidents/inc-1?token=" in str(delivery.payload["status_url"])
    assert "/ack/" not in body and NOTES not in body and "@" not in body


def test_a_chat_room_gets_the_plain_alert_without_notes_or_ack_link(
    directory: Directory,
) -> None:
    req = request("inc-1", "chat-room", role="leadership", channel="apprise")
    delivery = plan(req, reported(), directory)
    assert isinstance(delivery, AppriseDelivery)
    assert delivery.url == "json://hooks.example/apprise"
    assert "Hamline Elementary" in delivery.title and "Administrative warrant" in delivery.body
    assert "/ack/" not in delivery.body and NOTES not in delivery.body


def status_claim(text: str) -> ViewClaim:
    """The claim of the first status link in `text`."""
    token = text.split("/incidents/inc-1?token=")[1].split()[0].strip('",')
    return read_view_token(TEST_KEYS, token, incident_id="inc-1", now=NOW)


def test_each_recipient_gets_their_own_expiring_status_link_notes_only_by_email(
    directory: Directory,
) -> None:
    email = plan(request("inc-1", "law-dept"), reported(), directory)
    req = request("inc-1", "hook-only", role="safety", channel="webhook")
    hook = plan(req, reported(), directory)
    chat = plan(
        request("inc-1", "chat-room", role="leadership", channel="apprise"), reported(), directory
    )
    assert isinstance(hook, WebhookDelivery) and isinstance(chat, AppriseDelivery)
    by_email = status_claim(text_of(email))
    by_hook = status_claim(json.dumps(dict(hook.payload)))
    by_chat = status_claim(chat.body)
    assert (by_email.recipient, by_email.notes) == ("law-dept", True)
    assert (by_hook.recipient, by_hook.notes) == ("hook-only", False)
    assert (by_chat.recipient, by_chat.notes) == ("chat-room", False)
    assert by_hook.notification_id == req.data.notification_id
    assert by_email.expires_at - by_email.issued_at == 7 * 86400
    assert by_email.issued_at == int(NOW.timestamp())


def test_a_pattern_is_planned_for_each_channel(directory: Directory) -> None:
    pattern = originating(
        PatternDetected,
        PatternDetectedData(
            pattern="multi-school",
            window_minutes=30,
            incident_ids=["inc-1", "inc-2"],
            school_ids=["hamline", "other"],
            severity="critical",
            recipients=[],
        ),
        id="p-1",
        source="router",
        incident_id="pattern-1",
        school_id="district",
        now=NOW,
    )
    found = Found(pattern=serialize_event(pattern))
    hook = plan(
        request("pattern-1", "hook-only", channel="webhook", kind="pattern", school_id="district"),
        found,
        directory,
    )
    assert isinstance(hook, WebhookDelivery)
    assert hook.payload["schools"] == [
        {"id": "hamline", "name": "Hamline Elementary"},
        {"id": "other", "name": "other"},
    ]
    chat = plan(
        request("pattern-1", "chat-room", channel="apprise", kind="pattern", school_id="district"),
        found,
        directory,
    )
    assert isinstance(chat, AppriseDelivery)
    assert chat.title == "dooralert: encounters at 2 schools"
    assert chat.body == "Agents reported at Hamline Elementary, other within 30 minutes."
    mail = plan(
        request("pattern-1", "chief", kind="pattern", school_id="district"), found, directory
    )
    assert isinstance(mail, EmailDelivery)
    assert mail.message["To"] == "chief@district.example"
    assert "Hamline Elementary, other" in text_of(mail)


def test_what_is_missing_decides_between_retry_and_give_up(directory: Directory) -> None:
    with pytest.raises(PermanentDeliveryError, match=r'contact "gone" is not in district\.yaml'):
        plan(request("inc-1", "gone"), reported(), directory)
    with pytest.raises(PermanentDeliveryError, match='"chief" has no webhook channel'):
        plan(request("inc-1", "chief", channel="webhook"), reported(), directory)
    with pytest.raises(TransientDeliveryError, match="report is not in the log yet"):
        plan(request("inc-1", "law-dept"), Found(), directory)
    with pytest.raises(TransientDeliveryError, match="pattern event is not in the log yet"):
        plan(request("p", "chief", kind="pattern"), Found(), directory)
    with pytest.raises(PermanentDeliveryError, match="pattern event is unreadable"):
        plan(request("p", "chief", kind="pattern"), Found(pattern=b"{{{"), directory)
