"""Escalation, follow-ups and cross-school patterns (pure): state and event in, events out.

Every id derives from what caused it, so two router instances, or one restarted mid-way,
produce the same events and the server keeps one of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel

from schemas.envelope import about_incident
from schemas.events import (
    EncounterUpdated,
    EscalationRaised,
    EscalationRaisedData,
    Event,
    IncidentReopened,
    IncidentResolved,
    NotificationFailed,
    NotificationKind,
    NotificationRequested,
    NotificationRequestedData,
    PatternDetected,
    PatternDetectedData,
    Recipient,
    Severity,
    derive_id,
)
from services.domain.directory import Contact, Directory
from services.domain.incident import IncidentState
from services.router.decide import SUPPORTED_CHANNELS, first_channel, notification_id
from services.router.rules import Pattern, Rules

ROLE_JOIN = "+"  # an escalation recipient may stand in for several unacknowledged roles
E = TypeVar("E", bound=Event)


def _recipients(
    targets: dict[str, list[str]],
    *,
    incident_id: str,
    tier: int,
    directory: Directory,
    channels: frozenset[str] = SUPPORTED_CHANNELS,
) -> list[Recipient]:
    """contact id -> roles it stands in for, as recipients on each contact's first channel."""
    out: list[Recipient] = []
    for contact_id, roles in targets.items():
        contact = directory.contact(contact_id)
        channel = first_channel(contact, channels) if contact else None
        if channel is None:
            continue
        role = ROLE_JOIN.join(roles)
        out.append(
            Recipient(
                notification_id=notification_id(incident_id, tier, role, contact_id, channel),
                role=role,
                contact_id=contact_id,
                channel=channel,
            )
        )
    return out


def _add(targets: dict[str, list[str]], contact: Contact | str, role: str) -> None:
    cid = contact if isinstance(contact, str) else contact.id
    roles = targets.setdefault(cid, [])
    if role not in roles:
        roles.append(role)


@dataclass(frozen=True)
class _About:
    """Where the router's escalation events belong: the incident (also their correlation),
    the event that led to them (None for a fired deadline or a pattern), and when."""

    incident_id: str
    school_id: str
    causation_id: str | None
    now: datetime

    def event(
        self, cls: type[E], data: BaseModel, *, id: str, occurred_at: datetime | None = None
    ) -> E:
        """An event of type `cls` about this incident, from the router."""
        return about_incident(
            cls,
            data,
            id=id,
            source="router",
            incident_id=self.incident_id,
            school_id=self.school_id,
            causation_id=self.causation_id,
            now=self.now,
            occurred_at=occurred_at,
        )


def _requests(
    head_id: str,
    recipients: Sequence[Recipient],
    *,
    about: _About,
    tier: int,
    severity: Severity,
    routes: list[str],
    kind: NotificationKind,
    cause_id: str | None = None,
) -> list[Event]:
    """One `notification.requested` per recipient; ids derive from `head_id` (the escalation,
    pattern or follow-up they are sent for)."""
    return [
        about.event(
            NotificationRequested,
            NotificationRequestedData(
                notification_id=r.notification_id,
                role=r.role,
                contact_id=r.contact_id,
                channel=r.channel,
                tier=tier,
                severity=severity,
                routes=routes,
                kind=kind,
                cause_id=cause_id,
            ),
            id=derive_id(head_id, "notification.requested", r.notification_id),
        )
        for r in recipients
    ]


def on_deadline(
    state: IncidentState | None, *, tier: int, rules: Rules, directory: Directory, now: datetime
) -> tuple[list[Event], datetime | None]:
    """A deadline fired: escalate to tier `tier` unless every required role acknowledged.

    Returns the events and the next deadline to schedule (None: nothing more to wait for).
    """
    if state is None or state.report is None:
        return [], None
    missing = state.missing_acks()
    if not missing:
        return [], None
    done = state.escalation(tier, "deadline")
    if done is not None:
        # Raised already (another instance, or before a crash): only re-arm the next timer.
        return [], done.next_deadline
    step = rules.escalation.tier(tier)
    if step is None:
        return [], None
    tier_cfg, allowed = step
    targets: dict[str, list[str]] = {}
    if tier_cfg.notify == "backups":
        for role in missing:
            holders = {n.contact_id for n in state.notifications if role in n.role.split(ROLE_JOIN)}
            for cid in sorted(holders):
                contact = directory.contact(cid)
                for backup in contact.backups if contact else []:
                    if backup not in holders:
                        _add(targets, backup, role)
        if not targets:
            # Nobody has a backup: go straight to district leadership rather than nobody.
            for role in missing:
                for contact in directory.contacts_for("leadership", state.school_id):
                    _add(targets, contact, role)
    else:
        for tier_role in tier_cfg.notify:
            for contact in directory.contacts_for(tier_role, state.school_id):
                for role in missing:
                    _add(targets, contact, role)
    recipients = _recipients(targets, incident_id=state.incident_id, tier=tier, directory=directory)
    next_deadline = now + allowed if rules.escalation.tier(tier + 1) is not None else None
    raised_id = derive_id(state.incident_id, "escalation.raised", "deadline", str(tier))
    about = _About(state.incident_id, state.school_id, causation_id=None, now=now)
    raised = about.event(
        EscalationRaised,
        EscalationRaisedData(
            tier=tier,
            reason="deadline",
            missing_roles=missing,
            recipients=recipients,
            next_deadline=next_deadline,
        ),
        id=raised_id,
    )
    return [
        raised,
        *_requests(
            raised_id,
            recipients,
            about=about,
            tier=tier,
            severity=state.severity or "high",
            routes=state.routes,
            kind="escalation",
        ),
    ], next_deadline


def on_unreachable(
    state: IncidentState | None,
    failed: NotificationFailed,
    *,
    directory: Directory,
    now: datetime,
) -> list[Event]:
    """Every channel of a contact failed: tell that contact's backups at once."""
    d = failed.data
    if state is None or state.status == "resolved" or not d.contact_unreachable:
        return []
    tier = (
        max(
            (n.tier for n in state.notifications if n.notification_id == d.notification_id),
            default=0,
        )
        + 1
    )
    if state.has_escalation(tier, "unreachable", d.contact_id):
        return []
    contact = directory.contact(d.contact_id)
    targets: dict[str, list[str]] = {}
    for backup in contact.backups if contact else []:
        _add(targets, backup, d.role)
    if not targets:
        for leader in directory.contacts_for("leadership", state.school_id):
            if leader.id != d.contact_id:
                _add(targets, leader, d.role)
    recipients = _recipients(targets, incident_id=state.incident_id, tier=tier, directory=directory)
    raised_id = derive_id(state.incident_id, "escalation.raised", "unreachable", d.contact_id)
    about = _About(state.incident_id, state.school_id, causation_id=failed.id, now=now)
    raised = about.event(
        EscalationRaised,
        EscalationRaisedData(
            tier=tier,
            reason="unreachable",
            missing_roles=[d.role],
            recipients=recipients,
            unreachable_contact_id=d.contact_id,
        ),
        id=raised_id,
    )
    return [
        raised,
        *_requests(
            raised_id,
            recipients,
            about=about,
            tier=tier,
            severity=state.severity or "high",
            routes=state.routes,
            kind="escalation",
        ),
    ]


FOLLOW_UP_KINDS: dict[type[Event], NotificationKind] = {
    EncounterUpdated: "update",
    IncidentResolved: "resolved",
    IncidentReopened: "reopened",
}


def on_followup(
    state: IncidentState | None,
    event: EncounterUpdated | IncidentResolved | IncidentReopened,
    *,
    now: datetime,
) -> list[Event]:
    """Tell everyone already alerted (first alert, escalation) about an update, the
    all-clear or the all-clear withdrawn ("the agents are back"), once each."""
    if state is None:
        return []
    kind = FOLLOW_UP_KINDS[type(event)]
    seen: set[tuple[str, str]] = set()
    recipients: list[Recipient] = []
    for n in state.notifications:
        if n.kind in FOLLOW_UP_KINDS.values() or (n.contact_id, n.channel) in seen:
            continue
        seen.add((n.contact_id, n.channel))
        recipients.append(
            Recipient(
                notification_id=derive_id(event.id, "followup", n.contact_id, n.channel),
                role=n.role,
                contact_id=n.contact_id,
                channel=n.channel,
            )
        )
    return _requests(
        event.id,
        recipients,
        about=_About(event.incident_id, event.school_id, causation_id=event.id, now=now),
        tier=0,
        severity=state.severity or "high",
        routes=state.routes,
        kind=kind,
        cause_id=event.id,
    )


def reopened_deadline(
    state: IncidentState | None, *, rules: Rules, now: datetime
) -> tuple[int, datetime] | None:
    """After a reopening, the escalation deadline to arm again: (tier, when), or None when
    nobody required is still to confirm or the rules set no deadline.

    Acknowledgements given before the all-clear still count. Required roles nobody has
    confirmed get the same time to confirm as they had before (the route's `ack_within`,
    or the tier reached's), counted from the reopening, and then escalate from the tier
    where escalation stopped: the deadlines that fired while the incident was resolved
    did nothing, and the timer chain ended there."""
    if state is None or state.status != "open" or state.ack_deadline is None:
        return None
    if not state.missing_acks():
        return None
    reached = max((e.tier for e in state.escalations if e.reason == "deadline"), default=0)
    if rules.escalation.tier(reached + 1) is None:
        return None
    allowed: timedelta | None
    if reached == 0:
        named = [r.ack_timeout for r in rules.routes if r.name in state.routes]
        allowed = min((t for t in named if t is not None), default=None)
        if allowed is None and state.ack_deadline is not None and state.recorded_at:
            allowed = state.ack_deadline - state.recorded_at  # a route renamed since
    else:
        step = rules.escalation.tier(reached)
        allowed = step[1] if step else None
    if allowed is None:
        return None
    return reached + 1, now + allowed


@dataclass(frozen=True)
class Sighting:
    """An encounter as the pattern rules see it: which school, which incident, when stored.
    (Read from subjects and stream times alone, so detection never parses payloads.)"""

    incident_id: str
    school_id: str
    recorded_at: datetime


def detect_pattern(
    pattern: Pattern,
    recent: Sequence[Sighting],
    prior: Sequence[PatternDetected],
    *,
    directory: Directory,
    now: datetime,
    at: datetime | None = None,
) -> list[Event]:
    """`pattern.detected` (and alerts) when the window ending `at` (default: now) holds enough
    encounters; once a window. The router evaluates the window ending at each encounter's
    stored time (`at`), so the result does not depend on when it looks: the event occurred
    `at` (which the next windows' once-a-window check compares) and is recorded `now`."""
    end = now if at is None else at
    start = end - pattern.window
    if any(p.data.pattern == pattern.name and p.occurred_at > start for p in prior):
        return []
    window = sorted((e for e in recent if e.recorded_at >= start), key=lambda e: e.recorded_at)
    schools = list(dict.fromkeys(e.school_id for e in window))
    count = len(schools) if pattern.distinct_schools else len(window)
    if count < pattern.min_encounters:
        return []
    incidents = [e.incident_id for e in window]
    pid = derive_id("pattern", pattern.name, *incidents)
    incident_id = "pattern-" + pid[:8]
    targets: dict[str, list[str]] = {}
    for role in pattern.notify:
        for contact in directory.contacts_for(role, "district"):
            _add(targets, contact, role)
    recipients = _recipients(targets, incident_id=incident_id, tier=0, directory=directory)
    about = _About(incident_id, "district", causation_id=None, now=now)
    detected = about.event(
        PatternDetected,
        PatternDetectedData(
            pattern=pattern.name,
            window_minutes=int(pattern.window / timedelta(minutes=1)),
            incident_ids=incidents,
            school_ids=schools,
            severity=pattern.severity,
            recipients=recipients,
        ),
        id=pid,
        occurred_at=end,
    )
    return [
        detected,
        *_requests(
            pid,
            recipients,
            about=about,
            tier=0,
            severity=pattern.severity,
            routes=[pattern.name],
            kind="pattern",
        ),
    ]
