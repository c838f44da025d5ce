"""`dooralert audit report`: the after-action report for one incident (pure).

Built from the incident's events in log order (each with its stream sequence), the checkpoint
notes from DOORALERT_CHECKPOINTS and contact names looked up in district.yaml when the report
is rendered. Names appear only in this report, never in the log; addresses appear nowhere.
Rendered as Markdown or as one self-contained printable HTML page.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from schemas.events import (
    EncounterReported,
    EncounterUpdated,
    EscalationDecided,
    Event,
    IncidentResolved,
    MessageDeadLettered,
    PatternDetected,
)
from services.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint, parse_note
from services.audit.replay import summary
from services.domain.i18n import label
from services.domain.incident import fold

TEMPLATES = Path(__file__).parent / "templates"
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
    kind: str  # "update" or "resolved"
    changes: list[tuple[str, str]]
    note: str | None


@dataclass(frozen=True)
class DeadLetterRow:
    at: datetime
    stream_sequence: int
    subject: str
    consumer: str
    reason: str


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


# --- building --------------------------------------------------------------------------------


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


def _report_fields(event: EncounterReported) -> list[tuple[str, str]]:
    r = event.data
    return [
        ("Occurred at", _time(r.occurred_at)),
        ("Location", r.location),
        ("Agency stated", label(r.agency_stated)),
        ("Agents", str(r.agent_count)),
        ("Credentials shown", "Yes" if r.credentials_shown else "No"),
        ("Document", label(r.document)),
        ("Signed by a judge", label(r.signed_by_judge)),
        ("Purpose stated", label(r.purpose)),
        ("Entry", label(r.entry)),
    ]


_UPDATE_LABELS = {
    "entry": "Entry",
    "document": "Document",
    "signed_by_judge": "Signed by a judge",
    "agent_count": "Agents",
}


def build_report(
    messages: Sequence[tuple[int, Event]],
    *,
    now: datetime,
    checkpoints: Sequence[str] = (),
    verifier: Verifier | None = None,
    contact_names: Mapping[str, str] | None = None,
    school_name: str | None = None,
    problems: Sequence[str] = (),
) -> AfterActionReport:
    """The report for one incident from its `(stream sequence, event)` pairs in log order."""
    if not messages:
        raise ValueError("an after-action report needs at least one event")
    names = contact_names or {}

    def person(contact_id: str) -> Person:
        return Person(contact_id, names.get(contact_id, UNKNOWN_NAME))

    events = [e for _, e in messages]
    state = fold(events)
    assert state is not None
    reported = next((e for e in events if isinstance(e, EncounterReported)), None)
    decided = next((e for e in events if isinstance(e, EscalationDecided)), None)
    pattern_event = next((e for e in events if isinstance(e, PatternDetected)), None)

    notifications = [
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

    def first_told(contact_id: str, role: str) -> datetime | None:
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

    acks = []
    for a in state.acknowledgements:
        told = first_told(a.contact_id, a.role)
        acks.append(
            AckRow(
                role=a.role,
                person=person(a.contact_id),
                at=a.at,
                via=a.via,
                delay=a.at - told if told is not None else None,
            )
        )

    escalations = [
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
                (_UPDATE_LABELS[k], label(v) if k != "agent_count" else str(v))
                for k, v in d.model_dump(exclude_none=True).items()
                if k != "notes"
            ]
            follow_ups.append(
                FollowUp(at=e.occurred_at, kind="update", changes=changes, note=d.notes)
            )
        elif isinstance(e, IncidentResolved) and not resolved_seen:
            resolved_seen = True
            follow_ups.append(
                FollowUp(at=e.occurred_at, kind="resolved", changes=[], note=e.data.note)
            )

    dead = [
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

    pattern: list[tuple[str, str]] = []
    if pattern_event is not None:
        p = pattern_event.data
        pattern = [
            ("Pattern", p.pattern),
            ("Window", f"{p.window_minutes} min"),
            ("Schools", ", ".join(p.school_ids)),
            ("Incidents", ", ".join(p.incident_ids)),
        ]

    problems = list(problems)
    if reported is None and pattern_event is None:
        problems.append("no encounter.reported event for this incident in the log")

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
        notes=reported.data.notes if reported else None,
        pattern=pattern,
        severity=state.severity or (pattern_event.data.severity if pattern_event else None),
        routes=state.routes,
        notify_roles=list(decided.data.notify_roles) if decided else [],
        require_ack=state.require_ack,
        ack_deadline=state.ack_deadline,
        unresolved_roles=list(decided.data.unresolved_roles) if decided else [],
        notifications=notifications,
        acknowledgements=acks,
        missing_acks=state.missing_acks(),
        escalations=escalations,
        follow_ups=follow_ups,
        dead_letters=dead,
        timeline=[
            TimelineRow(seq=s, at=e.recorded_at, type=e.type, actor=e.actor, summary=_summary(e))
            for s, e in messages
        ],
        anchor=find_anchor(max(s for s, _ in messages), checkpoints, verifier),
        problems=problems,
    )


def _summary(event: Event) -> str:
    text = summary(event)
    return "" if text == event.type else text  # the type has its own column


# --- formatting ------------------------------------------------------------------------------


def _time(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{sign}{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{sign}{minutes}m {secs:02d}s"
    )


def _names(people: Sequence[Person]) -> str:
    return ", ".join(f"{p.name} ({p.contact_id})" for p in people) or "nobody"


def _status(n: NotificationRow) -> str:
    if n.status == "sent":
        return f"delivered {_time(n.sent_at)}"
    if n.status == "failed":
        return f"failed {_time(n.failed_at)}"
    return "pending"


def _anchor_markdown(anchor: Anchor | None) -> list[str]:
    if anchor is None:
        return []
    lines = [f"- Last event of this incident: stream sequence {anchor.last_seq}"]
    if not anchor.anchored:
        return [*lines, "- **Not yet anchored**: no checkpoint covers this sequence yet"]
    lines += [
        f"- Checkpoint #{anchor.checkpoint_number} of {md(anchor.origin)}, tree size {anchor.size}",
        f"- Root: `{anchor.root}`",
    ]
    if anchor.verified is None:
        lines.append("- Signature not checked (pass --key to check it)")
    elif anchor.verified:
        lines.append(f"- Signature verifies with key `{anchor.key}`")
    else:
        lines.append(
            f"- Signature **does NOT verify** with key `{anchor.key}`: {md(anchor.problem)}"
        )
    return [*lines, "", "`dooralert audit verify` checks that the log still hashes to this root."]


_NUMBERED = re.compile(r"^\d+[.)]")
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~&"})


def md(text: object) -> str:
    """User or log text made inert in Markdown (and single-line, for table cells)."""
    out = " ".join(str(text).split()).translate(_MD_SPECIAL)
    # At the start of a line these begin a heading, list or numbered list ("1. ").
    if out[:1] in ("#", "-", "+", "=") or _NUMBERED.match(out):
        out = "\\" + out
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return out + [""]


def render_markdown(r: AfterActionReport) -> str:
    title = f"After-action report: incident {r.incident_id}"
    school = f"{r.school_name} ({r.school_id})" if r.school_name else r.school_id
    out = [
        f"# {md(title)}",
        "",
        f"School: {md(school)}  ",
        f"Status: **{r.status}**"
        + (f" (resolved {_time(r.resolved_at)})" if r.resolved_at else "")
        + "  ",
        f"Events: {r.event_count}, {_time(r.first_event_at)} to {_time(r.last_event_at)}  ",
        f"Generated: {_time(r.generated_at)} (all times UTC)",
        "",
    ]
    out += [f"> warning: {md(p)}" for p in r.problems]
    if r.problems:
        out.append("")
    out += ["## What was reported", ""]
    if r.report:
        out += _table(["field", "value"], r.report)
        if r.notes:
            out += ["Notes:", "", *[f"> {md(line)}" for line in r.notes.splitlines() or [""]], ""]
    if r.pattern:
        out += _table(["field", "value"], r.pattern)
    if not r.report and not r.pattern:
        out += ["No report in the log.", ""]

    out += ["## Rules and severity", ""]
    out += _table(
        ["", ""],
        [
            ("Severity", r.severity or "—"),
            ("Rules matched", ", ".join(r.routes) or "none (safety net)"),
            ("Roles notified", ", ".join(r.notify_roles) or "—"),
            ("Must acknowledge", ", ".join(r.require_ack) or "—"),
            ("Acknowledge by", _time(r.ack_deadline)),
            *(
                [("Roles with no contact", ", ".join(r.unresolved_roles))]
                if r.unresolved_roles
                else []
            ),
        ],
    )

    out += ["## Notifications", ""]
    out += (
        _table(
            [
                "role",
                "contact",
                "name",
                "channel",
                "kind",
                "tier",
                "requested",
                "outcome",
                "attempts",
                "last error",
            ],
            [
                (
                    n.role,
                    n.person.contact_id,
                    n.person.name,
                    n.channel,
                    n.kind,
                    n.tier,
                    _time(n.requested_at),
                    _status(n),
                    n.attempts,
                    n.last_error or "",
                )
                for n in r.notifications
            ],
        )
        if r.notifications
        else ["None.", ""]
    )

    out += ["## Acknowledgements", ""]
    out += (
        _table(
            ["role", "contact", "name", "at", "via", "after first notification"],
            [
                (a.role, a.person.contact_id, a.person.name, _time(a.at), a.via, _duration(a.delay))
                for a in r.acknowledgements
            ],
        )
        if r.acknowledgements
        else ["None.", ""]
    )
    if r.missing_acks:
        out += [f"Never acknowledged: {md(', '.join(r.missing_acks))}", ""]

    out += ["## Escalations", ""]
    out += (
        _table(
            ["tier", "reason", "at", "missing roles", "told", "next deadline"],
            [
                (
                    e.tier,
                    e.reason + (f" ({_names([e.unreachable])})" if e.unreachable else ""),
                    _time(e.at),
                    ", ".join(e.missing_roles),
                    _names(e.told),
                    _time(e.next_deadline),
                )
                for e in r.escalations
            ],
        )
        if r.escalations
        else ["None.", ""]
    )

    out += ["## Follow-ups", ""]
    if not r.follow_ups:
        out += ["None.", ""]
    for f in r.follow_ups:
        what = "Resolved (all clear)" if f.kind == "resolved" else "Update"
        changes = "; ".join(f"{k}: {v}" for k, v in f.changes)
        out.append(f"- {_time(f.at)} {what}" + (f": {md(changes)}" if changes else ""))
        if f.note:
            out.append(f"  - note: {md(f.note)}")
    if r.follow_ups:
        out.append("")

    if r.dead_letters:
        out += ["## Dead letters", ""]
        out += _table(
            ["at", "seq", "subject", "consumer", "reason"],
            [
                (_time(d.at), d.stream_sequence, d.subject, d.consumer, d.reason)
                for d in r.dead_letters
            ],
        )

    out += ["## Checkpoint", ""]
    out += _anchor_markdown(r.anchor)
    out += ["", "## Timeline", ""]
    out += _table(
        ["seq", "recorded", "event", "actor", "summary"],
        [(t.seq, _time(t.at), t.type, t.actor, t.summary) for t in r.timeline],
    )
    return "\n".join(out).rstrip() + "\n"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _time
    env.filters["duration"] = _duration
    env.filters["names"] = _names
    env.filters["outcome"] = _status
    return env


def render_html(r: AfterActionReport) -> str:
    """One printable page, autoescaped, with no external assets."""
    return _environment().get_template("report.html").render(r=r)
