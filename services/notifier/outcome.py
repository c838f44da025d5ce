"""What follows a delivery outcome (pure): the events that record it, the contact's next channel.

A contact's channels are tried in the order district.yaml lists them, one channel type at a
time: the router requests the first; each permanent failure here requests the next; after the
last, the failure is marked `contact_unreachable` and the router escalates to the backups.
Every event here has an id derived from the notification id, so a redelivered request makes
the same events (dropped by the log as duplicates).
"""

from __future__ import annotations

from datetime import datetime

from schemas.envelope import caused_by
from schemas.events import (
    Channel,
    NotificationFailed,
    NotificationFailedData,
    NotificationRequested,
    NotificationRequestedData,
    NotificationSent,
    NotificationSentData,
    derive_id,
)
from services.domain.directory import Contact


def channel_order(contact: Contact) -> list[Channel]:
    """The contact's channel types, first occurrence order, duplicates dropped."""
    out: list[Channel] = []
    for ch in contact.channels:
        if ch.type not in out:
            out.append(ch.type)
    return out


def next_channel(contact: Contact | None, current: Channel) -> Channel | None:
    """The channel after `current` in the contact's order, or None when none is left."""
    if contact is None:
        return None
    order = channel_order(contact)
    if current not in order:
        return None
    i = order.index(current)
    return order[i + 1] if i + 1 < len(order) else None


def fallback_notification_id(notification_id: str, channel: str) -> str:
    """The notification id of the request for the contact's next channel (deterministic)."""
    return derive_id(notification_id, "fallback", channel)


def fallback_request(
    req: NotificationRequested, channel: Channel, *, now: datetime
) -> NotificationRequested:
    """The same alert for the same contact on its next channel (deterministic ids)."""
    d = req.data
    nid = fallback_notification_id(d.notification_id, channel)
    data = NotificationRequestedData(
        notification_id=nid,
        role=d.role,
        contact_id=d.contact_id,
        channel=channel,
        tier=d.tier,
        severity=d.severity,
        routes=list(d.routes),
        fallback_of=d.notification_id,
    )
    return caused_by(
        NotificationRequested,
        req,
        data,
        id=derive_id(nid, "notification.requested"),
        source="notifier",
        now=now,
    )


def sent_event(
    req: NotificationRequested, *, attempt: int, reply: str, now: datetime
) -> NotificationSent:
    """The receiving side accepted the notification at `attempt` and answered `reply`."""
    d = req.data
    data = NotificationSentData(
        notification_id=d.notification_id,
        role=d.role,
        contact_id=d.contact_id,
        channel=d.channel,
        attempt=attempt,
        reply=reply,
    )
    return caused_by(
        NotificationSent,
        req,
        data,
        id=derive_id(d.notification_id, "sent"),
        source="notifier",
        now=now,
    )


def failed_event(
    req: NotificationRequested,
    *,
    attempt: int,
    reason: str,
    retry_in: float | None,
    unreachable: bool = False,
    now: datetime,
) -> NotificationFailed:
    """Attempt `attempt` failed: retried after `retry_in` seconds, or (None) given up."""
    d = req.data
    data = NotificationFailedData(
        notification_id=d.notification_id,
        role=d.role,
        contact_id=d.contact_id,
        channel=d.channel,
        attempt=attempt,
        permanent=retry_in is None,
        reason=reason,
        next_attempt_in_seconds=retry_in,
        contact_unreachable=unreachable,
    )
    return caused_by(
        NotificationFailed,
        req,
        data,
        id=derive_id(d.notification_id, "failed", str(attempt)),
        source="notifier",
        now=now,
    )


def gave_up(
    req: NotificationRequested,
    contact: Contact | None,
    *,
    attempt: int,
    reason: str,
    now: datetime,
) -> tuple[NotificationFailed, NotificationRequested | None]:
    """The permanent failure, and the request for the contact's next channel if one is left
    (None: the contact is unreachable). Append them in this order: a crash in between
    redelivers the request, and both ids are deterministic, so neither is doubled."""
    nxt = next_channel(contact, req.data.channel)
    failed = failed_event(
        req, attempt=attempt, reason=reason, retry_in=None, unreachable=nxt is None, now=now
    )
    return failed, (fallback_request(req, nxt, now=now) if nxt is not None else None)


__all__ = [
    "channel_order",
    "failed_event",
    "fallback_notification_id",
    "fallback_request",
    "gave_up",
    "next_channel",
    "sent_event",
]
