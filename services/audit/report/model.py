"""What an after-action report holds: plain rows, built by build.py, rendered by markdown.py
and html.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

UNKNOWN_NAME = "(not in district.yaml)"


@dataclass(frozen=True)
class Person:
    contact_id: str
    name: str


@dataclass(frozen=True)
class NotificationRow:
    role: str
    person: Person
    channel: str
    tier: int
    kind: str
    status: str
    requested_at: datetime | None
    sent_at: datetime | None
    failed_at: datetime | None
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class AckRow:
    role: str
    person: Person
    at: datetime
    via: str
    delay: timedelta | None  # since this contact (else this role) was first notified


@dataclass(frozen=True)
class EscalationRow:
    tier: int
    reason: str
    missing_roles: list[str]
    at: datetime
    told: list[Person]
    next_deadline: datetime | None
    unreachable: Person | None


@dataclass(frozen=True)
class FollowUp:
    at: datetime
    kind: str  # "update", "resolved" or "reopened"
    changes: list[tuple[str, str]]
    note: str | None
    sealed: bool = False  # the note was sealed: shown as removed once its key is gone


@dataclass(frozen=True)
class DeadLetterRow:
    at: datetime
    stream_sequence: int
    subject: str
    consumer: str
    reason: str


@dataclass(frozen=True)
class PatternAlertRow:
    """A `pattern.detected` alert this incident was part of (it lives on a district subject)."""

    seq: int
    at: datetime
    alert_id: str  # the pattern alert's own incident id (`pattern-…`)
    pattern: str
    window_minutes: int
    incidents: int
    schools: list[str]
    severity: str


@dataclass(frozen=True)
class TimelineRow:
    seq: int
    at: datetime
    type: str
    actor: str
    summary: str


@dataclass(frozen=True)
class Anchor:
    """The first checkpoint whose tree covers the incident's last event, if any."""

    last_seq: int
    size: int | None = None
    root: str | None = None  # base64, as in the note
    origin: str | None = None
    checkpoint_number: int | None = None  # 1-based, in append order
    verified: bool | None = None  # None: no key given
    key: str | None = None
    problem: str | None = None

    @property
    def anchored(self) -> bool:
        """Whether a checkpoint covers the incident's last event."""
        return self.size is not None


@dataclass(frozen=True)
class AfterActionReport:
    incident_id: str
    school_id: str
    school_name: str | None
    generated_at: datetime
    status: str
    first_event_at: datetime | None
    last_event_at: datetime | None
    event_count: int
    reported_at: datetime | None
    resolved_at: datetime | None
    report: list[tuple[str, str]]  # (label, value), as first reported
    notes: str | None
    pattern: list[tuple[str, str]]
    severity: str | None
    routes: list[str]
    notify_roles: list[str]
    require_ack: list[str]
    ack_deadline: datetime | None
    unresolved_roles: list[str]
    notifications: list[NotificationRow]
    acknowledgements: list[AckRow]
    missing_acks: list[str]
    escalations: list[EscalationRow]
    follow_ups: list[FollowUp]
    dead_letters: list[DeadLetterRow]
    timeline: list[TimelineRow]
    anchor: Anchor | None
    problems: list[str] = field(default_factory=list)  # shown as warnings at the top
    pattern_alerts: list[PatternAlertRow] = field(default_factory=list)
    # When the incident's sealed notes were forgotten or expired (they are then not shown).
    notes_removed_on: datetime | None = None
