"""Building the after-action report for one incident (pure): its events in log order, each
with its stream sequence, folded and laid out as rows; the checkpoint that anchors them; and
contact names from district.yaml. Names appear only in the report, never in the log."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from schemas.events import (
    EncounterReported,
    EncounterUpdated,
    EscalationDecided,
    Event,
    IncidentReopened,
    IncidentResolved,
    MessageDeadLettered,
    PatternDetected,
)
from services.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint, parse_note
from services.audit.replay import summary
from services.audit.report.formatting import time
from services.audit.report.model import (
    UNKNOWN_NAME,
    AckRow,
    AfterActionReport,
    Anchor,
    DeadLetterRow,
    EscalationRow,
    FollowUp,
    NotificationRow,
    PatternAlertRow,
    Person,
    TimelineRow,
)
from services.domain.i18n import label
from services.domain.incident import IncidentState, fold
from services.domain.notes import open_notes, removed_on, sealed_notes
from services.domain.sealing import DataKey, NotesUnavailable

_UPDATE_LABELS = {
    "entry": "Entry",
    "document": "Document",
    "signed_by_judge": "Signed by a judge",
    "agent_count": "Agents",
    "agency_stated": "Agency stated",
    "purpose": "Asking about",
    "credentials_shown": "Credentials shown",
}


def _update_value(value: object) -> str:
    """An update's value in words: yes/no, a number as is, an enum's label."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) if isinstance(value, int) else label(value)


def build_report(
    messages: Sequence[tuple[int, Event]],
    *,
    now: datetime,
    checkpoints: Sequence[str] = (),
    verifier: Verifier | None = None,
    contact_names: Mapping[str, str] | None = None,
    school_name: str | None = None,
    problems: Sequence[str] = (),
    pattern_alerts: Sequence[tuple[int, PatternDetected]] = (),
    notes_key: DataKey | None = None,
    notes_retention: timedelta = timedelta(days=90),
) -> AfterActionReport:
    """The report for one incident from its `(stream sequence, event)` pairs in log order;
    `pattern_alerts`: the `pattern.detected` events whose incident list may include it;
    `notes_key`: the incident's notes key while it exists (else notes show as removed)."""
    if not messages:
        raise ValueError("an after-action report needs at least one event")
    people = _People(contact_names or {})
    events = [e for _, e in messages]
    state = fold(events)
    assert state is not None  # there is at least one event
    reported = next((e for e in events if isinstance(e, EncounterReported)), None)
    decided = next((e for e in events if isinstance(e, EscalationDecided)), None)
    pattern_event = next((e for e in events if isinstance(e, PatternDetected)), None)
    warnings = list(problems)
    notes = _Notes(notes_key, now=now, retention=notes_retention)
    if reported is None and pattern_event is None:
        warnings.append("no encounter.reported event for this incident in the log")

    return AfterActionReport(
        incident_id=state.incident_id,
        school_id=state.school_id,
        school_name=school_name,
        generated_at=now,
        status=state.status,
        first_event_at=min(e.recorded_at for e in events),
        last_event_at=state.last_event_at,
        event_count=len(events),
        reported_at=state.reported_at,
        resolved_at=state.resolved_at,
        report=_report_fields(reported) if reported else [],
        notes=notes.open(reported) if reported else None,
        notes_removed_on=removed_on(events, notes_key, now=now, retention=notes_retention),
        pattern=_pattern_fields(pattern_event) if pattern_event else [],
        severity=state.severity or (pattern_event.data.severity if pattern_event else None),
        routes=state.routes,
        notify_roles=list(decided.data.notify_roles) if decided else [],
        require_ack=state.require_ack,
        ack_deadline=state.ack_deadline,
        unresolved_roles=list(decided.data.unresolved_roles) if decided else [],
        notifications=_notifications(state, people),
        acknowledgements=_acknowledgements(state, people),
        missing_acks=state.missing_acks(),
        escalations=_escalations(state, people),
        follow_ups=_follow_ups(events, notes),
        dead_letters=_dead_letters(events),
        timeline=[
            TimelineRow(seq=s, at=e.recorded_at, type=e.type, actor=e.actor, summary=_summary(e))
            for s, e in messages
        ],
        anchor=find_anchor(max(s for s, _ in messages), checkpoints, verifier),
        problems=warnings,
        pattern_alerts=_pattern_alerts(state.incident_id, pattern_alerts),
    )


def _pattern_alerts(
    incident_id: str, alerts: Sequence[tuple[int, PatternDetected]]
) -> list[PatternAlertRow]:
    return [
        PatternAlertRow(
            seq=seq,
            at=p.recorded_at,
            alert_id=p.incident_id,
            pattern=p.data.pattern,
            window_minutes=p.data.window_minutes,
            incidents=len(p.data.incident_ids),
            schools=list(p.data.school_ids),
            severity=p.data.severity,
        )
        for seq, p in alerts
        if incident_id in p.data.incident_ids and p.incident_id != incident_id
    ]


def find_anchor(last_seq: int, notes: Sequence[str], verifier: Verifier | None) -> Anchor:
    """The first checkpoint (in append order) whose size is at least `last_seq`."""
    for number, note in enumerate(notes, 1):
        try:
            cp = Checkpoint.parse(parse_note(note).text)
        except NoteError:
            continue
        if cp.size < last_seq:
            continue
        anchor = Anchor(
            last_seq=last_seq,
            size=cp.size,
            origin=cp.origin,
            root=base64.b64encode(cp.root).decode(),
            checkpoint_number=number,
        )
        if verifier is None:
            return anchor
        key = f"{verifier.name}+{verifier.key_id.hex()}"
        try:
            open_checkpoint(note, verifier)
        except NoteError as exc:
            return replace(anchor, verified=False, key=key, problem=str(exc))
        return replace(anchor, verified=True, key=key)
    return Anchor(last_seq=last_seq)


class _People:
    """Contact ids with their district.yaml names (looked up only when a report is made)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names

    def __call__(self, contact_id: str) -> Person:
        return Person(contact_id, self.names.get(contact_id, UNKNOWN_NAME))


def _report_fields(event: EncounterReported) -> list[tuple[str, str]]:
    r = event.data
    return [
        ("Occurred at", time(r.occurred_at)),
        ("Location", r.location),
        ("Agency stated", label(r.agency_stated)),
        ("Agents", str(r.agent_count)),
        ("Credentials shown", "Yes" if r.credentials_shown else "No"),
        ("Document", label(r.document)),
        ("Signed by a judge", label(r.signed_by_judge)),
        ("Purpose stated", label(r.purpose)),
        ("Entry", label(r.entry)),
    ]


def _pattern_fields(event: PatternDetected) -> list[tuple[str, str]]:
    p = event.data
    return [
        ("Pattern", p.pattern),
        ("Window", f"{p.window_minutes} min"),
        ("Schools", ", ".join(p.school_ids)),
        ("Incidents", ", ".join(p.incident_ids)),
    ]


def _notifications(state: IncidentState, person: _People) -> list[NotificationRow]:
    return [
        NotificationRow(
            role=n.role,
            person=person(n.contact_id),
            channel=n.channel,
            tier=n.tier,
            kind=n.kind,
            status=n.status,
            requested_at=n.requested_at,
            sent_at=n.sent_at,
            failed_at=n.failed_at,
            attempts=n.attempts,
            last_error=n.last_error,
        )
        for n in state.notifications
    ]


def _first_told(state: IncidentState, contact_id: str, role: str) -> datetime | None:
    """When this contact was first notified; else when any of the roles it acknowledged for
    was (an escalation recipient may stand in for several: "law+safety")."""
    mine = [
        n.requested_at
        for n in state.notifications
        if n.contact_id == contact_id and n.requested_at is not None
    ]
    if not mine:
        roles = set(role.split("+"))
        mine = [
            n.requested_at
            for n in state.notifications
            if n.role in roles and n.requested_at is not None
        ]
    return min(mine) if mine else None


def _acknowledgements(state: IncidentState, person: _People) -> list[AckRow]:
    acks = []
    for a in state.acknowledgements:
        told = _first_told(state, a.contact_id, a.role)
        acks.append(
            AckRow(
                role=a.role,
                person=person(a.contact_id),
                at=a.at,
                via=a.via,
                delay=a.at - told if told is not None else None,
            )
        )
    return acks


def _escalations(state: IncidentState, person: _People) -> list[EscalationRow]:
    return [
        EscalationRow(
            tier=e.tier,
            reason=e.reason,
            missing_roles=e.missing_roles,
            at=e.at,
            told=[person(c) for c in e.contact_ids],
            next_deadline=e.next_deadline,
            unreachable=person(e.unreachable_contact_id) if e.unreachable_contact_id else None,
        )
        for e in state.escalations
    ]


class _Notes:
    """Opens an event's notes with the incident's key; None when they cannot be opened."""

    def __init__(self, key: DataKey | None, *, now: datetime, retention: timedelta) -> None:
        self.key, self.now, self.retention = key, now, retention

    def open(self, event: Event) -> str | None:
        try:
            return open_notes(event, self.key, now=self.now, retention=self.retention)
        except NotesUnavailable:
            return None


def _sealed(event: Event) -> bool:
    found = sealed_notes(event)
    return found is not None and found[1] is not None


def _follow_ups(events: Sequence[Event], notes: _Notes) -> list[FollowUp]:
    follow_ups: list[FollowUp] = []
    resolved_seen = False
    seen_ids: set[str] = set()
    for e in events:
        if e.id in seen_ids:  # a redelivered event appears once
            continue
        seen_ids.add(e.id)
        if isinstance(e, EncounterUpdated):
            d = e.data
            changes = [
                (_UPDATE_LABELS[k], _update_value(v))
                for k, v in d.model_dump(exclude_none=True).items()
                if k in _UPDATE_LABELS
            ]
            follow_ups.append(
                FollowUp(
                    at=e.occurred_at,
                    kind="update",
                    changes=changes,
                    note=notes.open(e),
                    sealed=_sealed(e),
                )
            )
        elif isinstance(e, IncidentResolved | IncidentReopened):
            # As the fold counts them: an all-clear while open, a reopening while resolved.
            if isinstance(e, IncidentResolved) == resolved_seen:
                continue
            resolved_seen = isinstance(e, IncidentResolved)
            follow_ups.append(
                FollowUp(
                    at=e.occurred_at,
                    kind="resolved" if resolved_seen else "reopened",
                    changes=[],
                    note=notes.open(e),
                    sealed=_sealed(e),
                )
            )
    return follow_ups


def _dead_letters(events: Sequence[Event]) -> list[DeadLetterRow]:
    return [
        DeadLetterRow(
            at=e.recorded_at,
            stream_sequence=e.data.stream_sequence,
            subject=e.data.subject,
            consumer=e.data.consumer,
            reason=e.data.reason,
        )
        for e in events
        if isinstance(e, MessageDeadLettered)
    ]


def _summary(event: Event) -> str:
    text = summary(event)
    return "" if text == event.type else text  # the type has its own column
