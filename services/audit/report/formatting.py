"""How times, durations, people and outcomes read in a report (Markdown and HTML alike)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.audit.report.model import NotificationRow, Person


def time(at: datetime | None) -> str:
    """`2026-01-02 03:04:05Z`, or a dash."""
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def duration(delta: timedelta | None) -> str:
    """`4.2s`, `3m 07s` or `1h 02m 03s`, or a dash."""
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{sign}{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{sign}{minutes}m {secs:02d}s"
    )


def names(people: Sequence[Person]) -> str:
    """`Name (id), Name (id)`, or `nobody`."""
    return ", ".join(f"{p.name} ({p.contact_id})" for p in people) or "nobody"


def outcome(n: NotificationRow) -> str:
    """What became of a notification, and when."""
    if n.status == "sent":
        return f"delivered {time(n.sent_at)}"
    if n.status == "failed":
        return f"failed {time(n.failed_at)}"
    return "pending"
