"""`dooralert audit replay`: fold the log into incidents and render their timelines."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    EncounterReported,
    EscalationDecided,
    Event,
    EventDecodeError,
    MessageDeadLettered,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    SubjectMismatch,
)
from services.domain.i18n import label
from services.domain.incident import IncidentState, fold
from services.domain.notes import reveal
from services.domain.sealing import DataKey
from services.eventlog import StoredMessage


def summary(event: Event) -> str:
    """One line a person can read; never contact details or report notes."""
    match event:
        case EncounterReported(data=r):
            return (
                f"{r.agent_count} agent(s), {label(r.agency_stated)}, {label(r.document)}, "
                f"{label(r.entry)} at {r.location}"
            )
        case EscalationDecided(data=decided):
            routes = ", ".join(decided.routes) or "no route matched"
            return (
                f"{decided.severity}: route {routes}; notify {', '.join(decided.notify_roles)}; "
                f"{len(decided.recipients)} recipient(s)"
            )
        case NotificationRequested(data=req):
            return f"{req.channel} to {req.role} {req.contact_id}"
        case NotificationSent(data=sent):
            return (
                f"{sent.channel} to {sent.role} {sent.contact_id} accepted "
                f"(attempt {sent.attempt}): {sent.reply}"
            )
        case NotificationFailed(data=failed):
            kind = "permanent" if failed.permanent else "transient"
            return (
                f"{failed.channel} to {failed.role} {failed.contact_id} failed ({kind}, attempt "
                f"{failed.attempt}): {failed.reason}"
            )
        case MessageDeadLettered(data=dead):
            return f"seq {dead.stream_sequence} set aside by {dead.consumer}: {dead.reason}"
        case _:
            return event.type


def group(messages: list[StoredMessage]) -> tuple[OrderedDict[str, list[Event]], list[str]]:
    """Events by incident in log order, plus a note for each message that could not be read
    or is not what its subject says (those are never folded)."""
    incidents: OrderedDict[str, list[Event]] = OrderedDict()
    problems: list[str] = []
    for m in messages:
        try:
            event = m.event()
        except SubjectMismatch as exc:
            # Set aside, never folded: the payload claims to be something its subject is not.
            problems.append(f"seq {m.seq} ({m.subject}): set aside: {str(exc)[:200]}")
            continue
        except EventDecodeError as exc:
            problems.append(f"seq {m.seq} ({m.subject}): unreadable: {str(exc)[:200]}")
            continue
        incidents.setdefault(event.incident_id, []).append(event)
    return incidents, problems


def render_text(incident_id: str, events: list[Event], state: IncidentState | None) -> str:
    """One incident's timeline as text, one line per event, then its notification tally."""
    lines = [f"Incident {incident_id}" + (f" at {state.school_id}" if state else "")]
    for e in events:
        lines.append(
            f"  {e.recorded_at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"Z  {e.type:<24} "
            f"{e.actor:<24} {summary(e)}"
        )
    if state:
        sent = sum(n.status == "sent" for n in state.notifications)
        failed = sum(n.status == "failed" for n in state.notifications)
        pending = len(state.notifications) - sent - failed
        lines.append(
            f"  => severity {state.severity}; notifications: {sent} sent, "
            f"{failed} failed, {pending} pending"
        )
    return "\n".join(lines)


def render_json(incident_id: str, events: list[Event], state: IncidentState | None) -> str:
    """One incident's events and folded state as one JSON line."""
    doc: dict[str, Any] = {
        "incident_id": incident_id,
        "events": [e.model_dump(mode="json") for e in events],
        "state": state.model_dump(mode="json") if state else None,
    }
    return json.dumps(doc)


def replay(
    messages: list[StoredMessage],
    *,
    incident: str | None,
    as_json: bool,
    notes_keys: Mapping[str, DataKey | None] | None = None,
    now: datetime | None = None,
    retention: timedelta = timedelta(days=90),
) -> tuple[str, int]:
    """The rendered replay and an exit code (1 when the incident is unknown). With
    `notes_keys` (incident id -> its notes key) the JSON state carries the notes opened while
    a key exists, else when they were removed; the text timeline never shows notes."""
    incidents, problems = group(messages)
    if incident is not None:
        if incident not in incidents:
            return f"no events for incident {incident}", 1
        incidents = OrderedDict([(incident, incidents[incident])])
    out = []
    for incident_id, events in incidents.items():
        state = fold(events, incident_id=incident_id)
        if state is not None and notes_keys is not None:
            key = notes_keys.get(incident_id)
            when = now or datetime.now(UTC)
            state = reveal(state, events, key, now=when, retention=retention)
        out.append(
            render_json(incident_id, events, state)
            if as_json
            else render_text(incident_id, events, state)
        )
    if problems and not as_json:
        out.append("Unreadable messages:\n  " + "\n  ".join(problems))
    return ("\n" if as_json else "\n\n").join(out), 0
