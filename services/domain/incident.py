"""The incident projection: a pure fold over an incident's events.

The status API, the incident page and `dooralert audit replay` all use this one fold, so
replayed state equals live state by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from schemas.events import (
    Channel,
    EncounterReported,
    EncounterUpdated,
    EscalationDecided,
    EscalationRaised,
    Event,
    IncidentAcknowledged,
    IncidentReopened,
    IncidentResolved,
    LinksRevoked,
    NotificationFailed,
    NotificationFailedData,
    NotificationKind,
    NotificationRequested,
    NotificationSent,
    NotificationSentData,
    Severity,
    derive_id,
)
from schemas.report import EncounterReport

NotificationStatus = Literal["requested", "sent", "failed"]


class NotificationState(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    role: str
    contact_id: str
    channel: Channel
    tier: int = 0
    kind: NotificationKind = "alert"
    status: NotificationStatus = "requested"
    requested_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


class Acknowledgement(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: str
    contact_id: str
    at: datetime
    via: str


class Escalation(BaseModel):
    model_config = ConfigDict(frozen=True)

    tier: int
    reason: str
    missing_roles: list[str]
    at: datetime
    contact_ids: list[str]
    unreachable_contact_id: str | None = None
    next_deadline: datetime | None = None


class LinkRevocation(BaseModel):
    """Status links issued until `at` stop working: `recipient`'s, or (None) everyone's."""

    model_config = ConfigDict(frozen=True)

    recipient: str | None
    at: datetime


class RoleStatus(BaseModel):
    """Per required role: when it was first told, and who acknowledged when."""

    model_config = ConfigDict(frozen=True)

    role: str
    notified_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class IncidentState(BaseModel):
    """One incident as its events left it: what was reported, who was told, who acknowledged."""

    model_config = ConfigDict(frozen=True)

    incident_id: str
    school_id: str
    status: Literal["open", "resolved"] = "open"
    resolved_at: datetime | None = None
    # An all-clear withdrawn (`incident.reopened`): how many times, and the last time. Each
    # round's all-clear and reopening get their own derived id (see `round_id`).
    reopen_count: int = 0
    reopened_at: datetime | None = None
    reported_at: datetime | None = None
    # When the report reached the log (was sent); `reported_at` is when the agents arrived.
    recorded_at: datetime | None = None
    report: EncounterReport | None = None
    severity: Severity | None = None
    routes: list[str] = []
    require_ack: list[str] = []
    ack_deadline: datetime | None = None
    notifications: list[NotificationState] = []
    acknowledgements: list[Acknowledgement] = []
    escalations: list[Escalation] = []
    updates: list[dict[str, object]] = []
    links_revoked: list[LinkRevocation] = []
    # Set by services.domain.notes.reveal: when the sealed notes were forgotten or expired.
    notes_removed_on: datetime | None = None
    event_count: int = 0
    last_event_at: datetime | None = None

    def round_id(self, event_type: str) -> str:
        """The id of this round's all-clear (`incident.resolved`) or reopening: a double
        submit, or two staff at once, record one per round; a later round gets a new one.
        Round 0's all-clear keeps the id it had before reopening existed."""
        if self.reopen_count == 0 and event_type == "incident.resolved":
            return derive_id(self.incident_id, event_type)
        return derive_id(self.incident_id, event_type, str(self.reopen_count))

    def link_revoked(self, recipient: str, issued_at: datetime) -> bool:
        """Whether a status link made for `recipient` at `issued_at` has been revoked."""
        return any(
            r.recipient in (None, recipient) and issued_at <= r.at for r in self.links_revoked
        )

    def notification(self, notification_id: str) -> NotificationState | None:
        """The notification with this id, if requested or reported on."""
        return next((n for n in self.notifications if n.notification_id == notification_id), None)

    def acknowledged_roles(self) -> set[str]:
        # An escalation recipient's ack covers every role it stood in for ("law+safety").
        """Every role someone has acknowledged for."""
        return {r for a in self.acknowledgements for r in a.role.split("+")}

    def missing_acks(self) -> list[str]:
        """Required roles nobody has acknowledged for (empty once resolved)."""
        if self.status == "resolved":
            return []
        done = self.acknowledged_roles()
        return [r for r in self.require_ack if r not in done]

    def escalation(
        self, tier: int, reason: str, contact_id: str | None = None
    ) -> Escalation | None:
        """The escalation already raised for this tier and reason (and contact), if any."""
        return next(
            (
                e
                for e in self.escalations
                if e.tier == tier and e.reason == reason and e.unreachable_contact_id == contact_id
            ),
            None,
        )

    def has_escalation(self, tier: int, reason: str, contact_id: str | None = None) -> bool:
        """Whether that escalation was raised already."""
        return self.escalation(tier, reason, contact_id) is not None

    @computed_field  # type: ignore[prop-decorator]  # pydantic-documented mypy gap
    @property
    def required_roles(self) -> list[RoleStatus]:
        """Per role that must acknowledge: notified at, acknowledged at and by whom."""
        return self.roles()

    def roles(self) -> list[RoleStatus]:
        """Per role that must acknowledge: notified at, acknowledged at and by whom."""
        out = []
        for role in self.require_ack:
            told = [
                n.requested_at
                for n in self.notifications
                if n.role == role and n.requested_at is not None
            ]
            ack = next((a for a in self.acknowledgements if role in a.role.split("+")), None)
            out.append(
                RoleStatus(
                    role=role,
                    notified_at=min(told) if told else None,
                    acknowledged_at=ack.at if ack else None,
                    acknowledged_by=ack.contact_id if ack else None,
                )
            )
        return out


def _upsert(state: IncidentState, new: NotificationState) -> IncidentState:
    items = [n for n in state.notifications if n.notification_id != new.notification_id]
    if len(items) == len(state.notifications):
        return state.model_copy(update={"notifications": [*state.notifications, new]})
    merged = [new if n.notification_id == new.notification_id else n for n in state.notifications]
    return state.model_copy(update={"notifications": merged})


def evolve(state: IncidentState | None, event: Event) -> IncidentState:
    """Apply one event. A redelivered event leaves statuses, acks and escalations as they
    were (only the event counter moves)."""
    if state is None:
        state = IncidentState(incident_id=event.incident_id, school_id=event.school_id)
    state = state.model_copy(
        update={"event_count": state.event_count + 1, "last_event_at": event.recorded_at}
    )
    match event:
        case EncounterReported():
            return state.model_copy(
                update={
                    "report": event.data,
                    "reported_at": event.data.occurred_at,
                    "recorded_at": state.recorded_at or event.recorded_at,
                }
            )
        case EscalationDecided():
            return _decided(state, event)
        case NotificationRequested():
            return _requested(state, event)
        case NotificationSent():
            return _sent(state, event)
        case NotificationFailed():
            return _failed(state, event)
        case IncidentAcknowledged():
            return _acknowledged(state, event)
        case EscalationRaised():
            return _raised(state, event)
        case EncounterUpdated():
            return _updated(state, event)
        case LinksRevoked():
            revoked = LinkRevocation(recipient=event.data.recipient, at=event.occurred_at)
            return state.model_copy(update={"links_revoked": [*state.links_revoked, revoked]})
        case IncidentResolved():
            if state.status == "resolved":
                return state
            return state.model_copy(update={"status": "resolved", "resolved_at": event.occurred_at})
        case IncidentReopened():
            if state.status != "resolved":
                return state
            return state.model_copy(
                update={
                    "status": "open",
                    "resolved_at": None,
                    "reopen_count": state.reopen_count + 1,
                    "reopened_at": event.occurred_at,
                }
            )
        case _:
            return state


def _decided(state: IncidentState, event: EscalationDecided) -> IncidentState:
    d = event.data
    return state.model_copy(
        update={
            "severity": d.severity,
            "routes": d.routes,
            "require_ack": d.require_ack,
            "ack_deadline": d.ack_deadline,
        }
    )


def _requested(state: IncidentState, event: NotificationRequested) -> IncidentState:
    d = event.data
    if state.notification(d.notification_id) is not None:
        return state
    return _upsert(
        state,
        NotificationState(
            notification_id=d.notification_id,
            role=d.role,
            contact_id=d.contact_id,
            channel=d.channel,
            tier=d.tier,
            kind=d.kind,
            requested_at=event.recorded_at,
        ),
    )


def _known(
    state: IncidentState, d: NotificationSentData | NotificationFailedData
) -> NotificationState:
    """The notification an outcome is about (a request the log lost still gets a row)."""
    return state.notification(d.notification_id) or NotificationState(
        notification_id=d.notification_id, role=d.role, contact_id=d.contact_id, channel=d.channel
    )


def _sent(state: IncidentState, event: NotificationSent) -> IncidentState:
    d = event.data
    base = _known(state, d)
    sent = base.model_copy(
        update={
            "status": "sent",
            "sent_at": base.sent_at or event.recorded_at,
            "attempts": max(base.attempts, d.attempt),
        }
    )
    return _upsert(state, sent)


def _failed(state: IncidentState, event: NotificationFailed) -> IncidentState:
    d = event.data
    base = _known(state, d)
    if base.status == "sent":
        return state  # a late failure report never undoes a delivery
    update: dict[str, object] = {"attempts": max(base.attempts, d.attempt), "last_error": d.reason}
    if d.permanent:
        update |= {"status": "failed", "failed_at": event.recorded_at}
    return _upsert(state, base.model_copy(update=update))


def _acknowledged(state: IncidentState, event: IncidentAcknowledged) -> IncidentState:
    d = event.data
    if any(a.role == d.role and a.contact_id == d.contact_id for a in state.acknowledgements):
        return state
    ack = Acknowledgement(role=d.role, contact_id=d.contact_id, at=event.occurred_at, via=d.via)
    return state.model_copy(update={"acknowledgements": [*state.acknowledgements, ack]})


def _raised(state: IncidentState, event: EscalationRaised) -> IncidentState:
    d = event.data
    if state.has_escalation(d.tier, d.reason, d.unreachable_contact_id):
        return state
    esc = Escalation(
        tier=d.tier,
        reason=d.reason,
        missing_roles=d.missing_roles,
        at=event.occurred_at,
        unreachable_contact_id=d.unreachable_contact_id,
        contact_ids=[r.contact_id for r in d.recipients],
        next_deadline=d.next_deadline,
    )
    return state.model_copy(update={"escalations": [*state.escalations, esc]})


# An update's notes stay with the update: sealed, they open only under its own event id.
_NOTE_FIELDS = {"notes", "notes_sealed", "notes_v1"}


def _updated(state: IncidentState, event: EncounterUpdated) -> IncidentState:
    changes = event.data.model_dump(mode="json", exclude_none=True)
    entry = {"at": event.occurred_at.isoformat(), "event_id": event.id, **changes}
    update: dict[str, object] = {"updates": [*state.updates, entry]}
    if state.report is not None:
        fields = event.data.model_dump(exclude_none=True, exclude=_NOTE_FIELDS)
        update["report"] = state.report.model_copy(update=fields)
    return state.model_copy(update=update)


def fold(events: Iterable[Event], *, incident_id: str | None = None) -> IncidentState | None:
    """The state of incident `incident_id` (default: the first event's) after its events in
    order; None when there are none.

    An event about another incident, or about the same incident at another school, is never
    folded: a publisher can write any payload, and an acknowledgement moved onto this incident
    must not count (DESIGN §4). The readers that hand events in have already set aside and
    logged, with sequence and subject, any message that is not what its subject says; this is
    the fold's own guard, so it stays pure and silent.
    """
    state: IncidentState | None = None
    for event in events:
        if state is None:
            if incident_id is not None and event.incident_id != incident_id:
                continue
        elif event.incident_id != state.incident_id or event.school_id != state.school_id:
            continue
        state = evolve(state, event)
    return state
