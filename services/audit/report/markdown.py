"""The after-action report as Markdown, with every piece of user or log text made inert."""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.audit.report.formatting import duration, names, outcome, time
from services.audit.report.model import AfterActionReport, Anchor
from services.domain.i18n import text

_NUMBERED = re.compile(r"^\d+[.)]")
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~&"})
_NONE = ["None.", ""]


def md(text: object) -> str:
    """User or log text made inert in Markdown (and single-line, for table cells)."""
    out = " ".join(str(text).split()).translate(_MD_SPECIAL)
    # At the start of a line these begin a heading, list or numbered list ("1. ").
    if out[:1] in ("#", "-", "+", "=") or _NUMBERED.match(out):
        out = "\\" + out
    return out


def render_markdown(r: AfterActionReport) -> str:
    """The whole report as one Markdown document."""
    out = _heading(r)
    out += _reported(r)
    out += _rules(r)
    if r.pattern_alerts:
        out += ["## Pattern alerts", "", "This incident was part of:", ""]
        out += _table(
            ["detected", "pattern", "alert", "window", "incidents", "schools", "severity", "seq"],
            [
                (
                    time(p.at),
                    p.pattern,
                    p.alert_id,
                    f"{p.window_minutes} min",
                    p.incidents,
                    ", ".join(p.schools),
                    p.severity,
                    p.seq,
                )
                for p in r.pattern_alerts
            ],
        )
    out += ["## Notifications", "", *_notifications(r)]
    out += ["## Acknowledgements", "", *_acknowledgements(r)]
    out += ["## Escalations", "", *_escalations(r)]
    out += ["## Follow-ups", "", *_follow_ups(r)]
    if r.dead_letters:
        out += ["## Dead letters", ""]
        out += _table(
            ["at", "seq", "subject", "consumer", "reason"],
            [
                (time(d.at), d.stream_sequence, d.subject, d.consumer, d.reason)
                for d in r.dead_letters
            ],
        )
    out += ["## Checkpoint", ""]
    out += _anchor(r.anchor)
    out += ["", "## Timeline", ""]
    out += _table(
        ["seq", "recorded", "event", "actor", "summary"],
        [(t.seq, time(t.at), t.type, t.actor, t.summary) for t in r.timeline],
    )
    return "\n".join(out).rstrip() + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _heading(r: AfterActionReport) -> list[str]:
    title = f"After-action report: incident {r.incident_id}"
    school = f"{r.school_name} ({r.school_id})" if r.school_name else r.school_id
    out = [
        f"# {md(title)}",
        "",
        f"School: {md(school)}  ",
        f"Status: **{r.status}**"
        + (f" (resolved {time(r.resolved_at)})" if r.resolved_at else "")
        + "  ",
        f"Events: {r.event_count}, {time(r.first_event_at)} to {time(r.last_event_at)}  ",
        f"Generated: {time(r.generated_at)} (all times UTC)",
        "",
    ]
    out += [f"> warning: {md(p)}" for p in r.problems]
    if r.problems:
        out.append("")
    return out


def _reported(r: AfterActionReport) -> list[str]:
    out = ["## What was reported", ""]
    if r.report:
        out += _table(["field", "value"], r.report)
        if r.notes:
            out += ["Notes:", "", *[f"> {md(line)}" for line in r.notes.splitlines() or [""]], ""]
        elif r.notes_removed_on:
            out += [f"Notes: {_removed(r)}", ""]
    if r.pattern:
        out += _table(["field", "value"], r.pattern)
    if not r.report and not r.pattern:
        out += ["No report in the log.", ""]
    return out


def _rules(r: AfterActionReport) -> list[str]:
    rows = [
        ("Severity", r.severity or "—"),
        ("Rules matched", ", ".join(r.routes) or "none (safety net)"),
        ("Roles notified", ", ".join(r.notify_roles) or "—"),
        ("Must acknowledge", ", ".join(r.require_ack) or "—"),
        ("Acknowledge by", time(r.ack_deadline)),
    ]
    if r.unresolved_roles:
        rows.append(("Roles with no contact", ", ".join(r.unresolved_roles)))
    return ["## Rules and severity", "", *_table(["", ""], rows)]


def _notifications(r: AfterActionReport) -> list[str]:
    if not r.notifications:
        return list(_NONE)
    header = [
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
    ]
    rows = [
        (
            n.role,
            n.person.contact_id,
            n.person.name,
            n.channel,
            n.kind,
            n.tier,
            time(n.requested_at),
            outcome(n),
            n.attempts,
            n.last_error or "",
        )
        for n in r.notifications
    ]
    return _table(header, rows)


def _acknowledgements(r: AfterActionReport) -> list[str]:
    out = (
        _table(
            ["role", "contact", "name", "at", "via", "after first notification"],
            [
                (a.role, a.person.contact_id, a.person.name, time(a.at), a.via, duration(a.delay))
                for a in r.acknowledgements
            ],
        )
        if r.acknowledgements
        else list(_NONE)
    )
    if r.missing_acks:
        out += [f"Never acknowledged: {md(', '.join(r.missing_acks))}", ""]
    return out


def _escalations(r: AfterActionReport) -> list[str]:
    if not r.escalations:
        return list(_NONE)
    return _table(
        ["tier", "reason", "at", "missing roles", "told", "next deadline"],
        [
            (
                e.tier,
                e.reason + (f" ({names([e.unreachable])})" if e.unreachable else ""),
                time(e.at),
                ", ".join(e.missing_roles),
                names(e.told),
                time(e.next_deadline),
            )
            for e in r.escalations
        ],
    )


def _follow_ups(r: AfterActionReport) -> list[str]:
    if not r.follow_ups:
        return list(_NONE)
    out = []
    for f in r.follow_ups:
        what = {
            "resolved": "Resolved (all clear)",
            "reopened": "Reopened (all clear withdrawn)",
        }.get(f.kind, "Update")
        changes = "; ".join(f"{k}: {v}" for k, v in f.changes)
        out.append(f"- {time(f.at)} {what}" + (f": {md(changes)}" if changes else ""))
        if f.note:
            out.append(f"  - note: {md(f.note)}")
        elif f.sealed and r.notes_removed_on:
            out.append(f"  - note: {_removed(r)}")
    return [*out, ""]


def _anchor(anchor: Anchor | None) -> list[str]:
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


def _removed(r: AfterActionReport) -> str:
    assert r.notes_removed_on is not None
    return text("incident.notes_removed", date=f"{r.notes_removed_on:%Y-%m-%d}")
