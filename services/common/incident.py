"""The incident projection: a pure fold over an incident's events.

The status API, the incident page and `dooralert audit replay` all use this one fold, so
replayed state equals live state by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.events import (
    EncounterReported,
    EscalationDecided,
    Event,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
)
from schemas.report import EncounterReport

NotificationStatus = Literal["requested", "sent", "failed"]


class NotificationState(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    role: str
    contact_id: str
    channel: str
    tier: int = 0
    status: NotificationStatus = "requested"
    requested_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


class IncidentState(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    school_id: str
    status: Literal["open"] = "open"
    reported_at: datetime | None = None
    report: EncounterReport | None = None
    severity: str | None = None
    routes: list[str] = []
    require_ack: list[str] = []
    ack_deadline: datetime | None = None
    notifications: list[NotificationState] = []
    event_count: int = 0
    last_event_at: datetime | None = None

    def notification(self, notification_id: str) -> NotificationState | None:
        return next((n for n in self.notifications if n.notification_id == notification_id), None)


def _upsert(state: IncidentState, new: NotificationState) -> IncidentState:
    items = [n for n in state.notifications if n.notification_id != new.notification_id]
    if len(items) == len(state.notifications):
        return state.model_copy(update={"notifications": [*state.notifications, new]})
    merged = [new if n.notification_id == new.notification_id else n for n in state.notifications]
    return state.model_copy(update={"notifications": merged})


def evolve(state: IncidentState | None, event: Event) -> IncidentState:
    """Apply one event. Idempotent per event: re-applying a delivered one changes nothing."""
    if state is None:
        state = IncidentState(incident_id=event.incident_id, school_id=event.school_id)
    state = state.model_copy(
        update={"event_count": state.event_count + 1, "last_event_at": event.recorded_at}
    )
    match event:
        case EncounterReported():
            return state.model_copy(
                update={"report": event.data, "reported_at": event.data.occurred_at}
            )
        case EscalationDecided():
            d = event.data
            return state.model_copy(
                update={
                    "severity": d.severity,
                    "routes": d.routes,
                    "require_ack": d.require_ack,
                    "ack_deadline": d.ack_deadline,
                }
            )
        case NotificationRequested():
            d = event.data
            existing = state.notification(d.notification_id)
            if existing is not None:
                return state
            return _upsert(
                state,
                NotificationState(
                    notification_id=d.notification_id,
                    role=d.role,
                    contact_id=d.contact_id,
                    channel=d.channel,
                    tier=d.tier,
                    requested_at=event.recorded_at,
                ),
            )
        case NotificationSent():
            d = event.data
            base = state.notification(d.notification_id) or NotificationState(
                notification_id=d.notification_id,
                role=d.role,
                contact_id=d.contact_id,
                channel=d.channel,
            )
            return _upsert(
                state,
                base.model_copy(
                    update={
                        "status": "sent",
                        "sent_at": base.sent_at or event.recorded_at,
                        "attempts": max(base.attempts, d.attempt),
                    }
                ),
            )
        case NotificationFailed():
            d = event.data
            base = state.notification(d.notification_id) or NotificationState(
                notification_id=d.notification_id,
                role=d.role,
                contact_id=d.contact_id,
                channel=d.channel,
            )
            if base.status == "sent":
                return state  # a late failure report never undoes a delivery
            update: dict[str, object] = {
                "attempts": max(base.attempts, d.attempt),
                "last_error": d.reason,
            }
            if d.permanent:
                update |= {"status": "failed", "failed_at": event.recorded_at}
            return _upsert(state, base.model_copy(update=update))
        case _:
            return state


def fold(events: Iterable[Event]) -> IncidentState | None:
    state: IncidentState | None = None
    for event in events:
        state = evolve(state, event)
    return state
