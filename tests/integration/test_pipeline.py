"""A report reaches law, safety and the principal by email through a real nats-server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from schemas.events import (
    NotificationRequested,
    NotificationRequestedData,
    derive_id,
    new_event_id,
)
from services.eventlog import publish_event, read_incident, read_messages
from tests.support import eventually, report

# Example config: law has two contacts, safety one, hamline's principal one.
BASE_RECIPIENTS = {
    "law-oncall@district.example",
    "deputy-counsel@district.example",
    "safety-desk@district.example",
    "principal@hamline.district.example",
}


def recipients(smtp) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(r for m in smtp.received for r in m.rcpt)


async def test_report_emails_law_safety_and_principal_and_status_shows_sent(pipeline, smtp):
    resp = await pipeline.report(report())
    assert resp.status_code == 202
    body = resp.json()
    incident_id = body["incident_id"]
    assert f"/api/v1/incidents/{incident_id}" in body["status_url"]

    await eventually(lambda: set(recipients(smtp)) == BASE_RECIPIENTS, timeout=10)
    msg = smtp.received[0].message
    assert "Hamline Elementary" in msg["Subject"]
    assert msg["X-Dooralert-Incident"] == incident_id
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Administrative warrant" in text and "Do not admit" in text
    assert f"/incidents/{incident_id}?token=" in text
    assert "<table" in html

    async def all_sent():
        state = await pipeline.incident(incident_id)
        return (
            state
            if state["notifications"] and all(n["status"] == "sent" for n in state["notifications"])
            else None
        )

    state = await eventually(all_sent)
    assert {(n["role"], n["contact_id"], n["channel"]) for n in state["notifications"]} == {
        ("law", "law-dept", "email"),
        ("law", "law-counsel", "email"),
        ("safety", "safety-office", "email"),
        ("principal", "principal-hamline", "email"),
    }
    assert state["severity"] == "high" and state["routes"] == ["any-encounter"]


async def test_student_purpose_also_alerts_the_family_liaison(pipeline, smtp):
    resp = await pipeline.report(report(purpose="student"))
    assert resp.status_code == 202
    await eventually(lambda: len(smtp.received) == 5)
    assert "liaison@hamline.district.example" in recipients(smtp)


async def test_same_idempotency_key_gives_same_incident_and_no_second_alert(pipeline, smtp):
    first = await pipeline.report(report(), **{"Idempotency-Key": "door-1"})
    await eventually(lambda: len(smtp.received) == 4)
    second = await pipeline.report(report(), **{"Idempotency-Key": "door-1"})
    assert second.status_code == 202
    assert second.json()["incident_id"] == first.json()["incident_id"]
    assert second.json()["created"] is False
    await asyncio.sleep(0.5)
    assert len(smtp.received) == 4
    conflict = await pipeline.report(report(agent_count=9), **{"Idempotency-Key": "door-1"})
    assert conflict.status_code == 409


async def test_log_holds_no_contact_details(pipeline, smtp):
    await pipeline.report(report(purpose="student"))
    await eventually(lambda: len(smtp.received) == 5)
    await asyncio.sleep(0.3)
    blob = b"".join(m.data for m in await read_messages(pipeline.js))
    assert b"@" not in blob.replace(b"@dooralert", b"")


async def test_transient_smtp_errors_are_retried_and_deliver_once(pipeline, smtp):
    smtp.handler.replies = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    resp = await pipeline.report(report())
    incident_id = resp.json()["incident_id"]
    await eventually(lambda: len(smtp.received) == 4)
    events = await eventually(lambda: _settled(pipeline, incident_id, sent=4))
    failures = [e for e in events if e.type == "notification.failed"]
    assert len(failures) == 2 and all(not f.data.permanent for f in failures)
    await asyncio.sleep(0.5)
    assert len(smtp.received) == 4  # no duplicate after the retries


async def test_permanent_smtp_error_fails_that_contact_and_escalates_to_its_backup(pipeline, smtp):
    smtp.handler.reply_for = lambda rcpts: (
        "550 5.1.1 <safety-desk@district.example> mailbox unavailable"
        if "safety-desk@district.example" in rcpts
        else None
    )
    resp = await pipeline.report(report())
    incident_id = resp.json()["incident_id"]
    # The safety office has one channel, so it is unreachable: its backup is told at once.
    await eventually(lambda: "chief@district.example" in recipients(smtp))
    assert "safety-desk@district.example" not in recipients(smtp)

    async def settled():
        state = await pipeline.incident(incident_id)
        statuses = {n["contact_id"]: n for n in state["notifications"]}
        return (
            state
            if statuses.get("safety-office", {}).get("status") == "failed"
            and sum(n["status"] == "sent" for n in statuses.values()) == 4
            else None
        )

    state = await eventually(settled)
    failed = next(n for n in state["notifications"] if n["contact_id"] == "safety-office")
    assert failed["last_error"].startswith("550") and "@" not in failed["last_error"]
    [escalation] = state["escalations"]
    assert escalation["reason"] == "unreachable" and escalation["contact_ids"] == [
        "chief-of-schools"
    ]
    assert escalation["missing_roles"] == ["safety"]


async def test_smtp_down_then_up_delivers_after_recovery(pipeline, smtp):
    pipeline.settings.max_attempts = 100  # keep retrying through the outage
    smtp.stop()
    resp = await pipeline.report(report())
    incident_id = resp.json()["incident_id"]
    await eventually(lambda: _settled(pipeline, incident_id, failed_transient=4), timeout=10)
    smtp.start()
    await eventually(lambda: len(smtp.received) == 4, timeout=15)


async def test_redelivered_request_sends_no_second_email(pipeline, smtp):
    resp = await pipeline.report(report())
    incident_id = resp.json()["incident_id"]
    await eventually(lambda: len(smtp.received) == 4)
    events = await read_incident(pipeline.js, incident_id)
    request = next(e for e in events if isinstance(e, NotificationRequested))
    # The same request again under a new event id (as after the duplicate window passed).
    await publish_event(pipeline.js, request.model_copy(update={"id": new_event_id()}))
    await asyncio.sleep(1.0)
    assert len(smtp.received) == 4


async def test_poison_message_is_set_aside_and_the_consumer_keeps_going(pipeline, smtp):
    await pipeline.js.publish("dooralert.hamline.x1.notification.requested", b"{not json")
    await pipeline.js.publish(
        "dooralert.hamline.x2.encounter.reported", json.dumps({"type": "nope"}).encode()
    )
    resp = await pipeline.report(report())
    assert resp.status_code == 202
    await eventually(lambda: len(smtp.received) == 4)

    async def dead_letters():
        msgs = await read_messages(pipeline.js, "dooralert.*.*.message.dead_lettered")
        return msgs if len(msgs) == 2 else None

    msgs = await eventually(dead_letters)
    reasons = [json.loads(m.data)["data"] for m in msgs]
    assert {r["consumer"] for r in reasons} == {"router", "notifier"}


async def test_request_for_unknown_contact_fails_permanently(pipeline, smtp):
    now = datetime.now(UTC)
    nid = derive_id("x", "ghost")
    await publish_event(
        pipeline.js,
        NotificationRequested(
            id=new_event_id(),
            source="router",
            incident_id="ghost-incident",
            school_id="hamline",
            occurred_at=now,
            recorded_at=now,
            correlation_id="ghost-incident",
            actor="system",
            data=NotificationRequestedData(
                notification_id=nid,
                role="law",
                contact_id="nobody",
                channel="email",
                severity="high",
                routes=[],
            ),
        ),
    )
    events = await eventually(lambda: _settled(pipeline, "ghost-incident", failed_permanent=1))
    failed = next(e for e in events if e.type == "notification.failed")
    assert "nobody" in failed.data.reason


async def _settled(pipeline, incident_id, *, sent=0, failed_transient=0, failed_permanent=0):
    events = await read_incident(pipeline.js, incident_id)
    n_sent = sum(e.type == "notification.sent" for e in events)
    n_tf = len(
        {
            e.data.notification_id
            for e in events
            if e.type == "notification.failed" and not e.data.permanent
        }
    )
    n_pf = sum(e.type == "notification.failed" and e.data.permanent for e in events)
    ok = n_sent >= sent and n_tf >= failed_transient and n_pf >= failed_permanent
    return events if ok else None
