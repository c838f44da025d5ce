"""What to do after a delivery outcome (pure): the contact's next channel, the fallback request.

A contact's channels are tried in the order district.yaml lists them, one channel type at a
time: the router requests the first; each permanent failure here requests the next; after the
last, the failure is marked `contact_unreachable` and the router escalates to the backups.
"""

from __future__ import annotations

from datetime import datetime

from schemas.events import (
    Channel,
    EncounterReported,
    NotificationRequested,
    NotificationRequestedData,
    derive_id,
)
from services.domain.directory import Contact
from services.domain.protocol import label


def channel_order(contact: Contact) -> list[str]:
    """The contact's channel types, first occurrence order, duplicates dropped."""
    out: list[str] = []
    for ch in contact.channels:
        if ch.type not in out:
            out.append(ch.type)
    return out


def next_channel(contact: Contact | None, current: str) -> str | None:
    """The channel after `current` in the contact's order, or None when none is left."""
    if contact is None:
        return None
    order = channel_order(contact)
    if current not in order:
        return None
    i = order.index(current)
    return order[i + 1] if i + 1 < len(order) else None


def fallback_notification_id(notification_id: str, channel: str) -> str:
    return derive_id(notification_id, "fallback", channel)


def fallback_request(
    req: NotificationRequested, channel: str, *, now: datetime
) -> NotificationRequested:
    """The same alert for the same contact on its next channel (deterministic ids)."""
    d = req.data
    nid = fallback_notification_id(d.notification_id, channel)
    return NotificationRequested(
        id=derive_id(nid, "notification.requested"),
        source="notifier",
        incident_id=req.incident_id,
        school_id=req.school_id,
        occurred_at=now,
        recorded_at=now,
        correlation_id=req.correlation_id,
        causation_id=req.id,
        actor="system",
        data=NotificationRequestedData(
            notification_id=nid,
            role=d.role,
            contact_id=d.contact_id,
            channel=channel,  # type: ignore[arg-type]
            tier=d.tier,
            severity=d.severity,
            routes=list(d.routes),
            fallback_of=d.notification_id,
        ),
    )


def webhook_payload(
    req: NotificationRequested, report: EncounterReported, *, school_name: str, status_url: str
) -> dict[str, object]:
    """The webhook body: the incident, never a person (no contact, no notes)."""
    r = report.data
    return {
        "type": "dooralert.alert",
        "delivery_id": req.data.notification_id,
        "incident_id": req.incident_id,
        "school": {"id": req.school_id, "name": school_name},
        "severity": req.data.severity,
        "role": req.data.role,
        "routes": list(req.data.routes),
        "occurred_at": r.occurred_at.isoformat() if r.occurred_at else None,
        "report": {
            "location": r.location,
            "agency_stated": str(r.agency_stated.value),
            "agent_count": r.agent_count,
            "credentials_shown": r.credentials_shown,
            "document": str(r.document.value),
            "signed_by_judge": str(r.signed_by_judge.value),
            "purpose": str(r.purpose.value),
            "entry": str(r.entry.value),
        },
        "summary": (
            f"Agents at {school_name}: {label(r.agency_stated)}, {label(r.document)} - "
            f"{label(r.entry)}"
        ),
        "status_url": status_url,
    }


__all__ = ["Channel", "channel_order", "fallback_request", "next_channel", "webhook_payload"]
