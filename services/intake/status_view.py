"""What the incident page says about delivery, in plain words (pure): the banner that leads
the page, local times, and the alerted people grouped per contact."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from services.domain.i18n import role_name, text
from services.domain.incident import IncidentState, NotificationState

# A notification still only requested after this long is late enough to say so: a healthy
# notifier sends within a second or two (the default of DOORALERT_LATE_AFTER_SECONDS).
STALL_AFTER = timedelta(seconds=30)
# "No confirmation in N minutes?" when the rules set no acknowledgement deadline.
DEFAULT_CALL_MINUTES = 2


@dataclass(frozen=True)
class Banner:
    """The page's first words: `tone` (received, waiting, confirmed, delayed, resolved)."""

    tone: str
    lines: list[str]
    delayed: str | None = None
    # When the page would say something new without any event (a send turning late).
    recheck_at: datetime | None = None


@dataclass(frozen=True)
class ContactRow:
    """One alerted person, with each notification they were sent, labelled by kind."""

    contact_id: str
    role: str
    channels: list[str]
    items: list[NotificationState] = field(default_factory=list)


def local_time(at: datetime | str | None, tz: tzinfo, language: str) -> str:
    """`at` (or its ISO text) as a clock time in the district's zone ("10:23 PM", "22:23")."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.astimezone(tz).strftime(text("time.format", language)) if at else "—"


def local_datetime(at: datetime | None, tz: tzinfo, language: str) -> str:
    """`at` as a date and time in the district's zone, with the zone's abbreviation."""
    return at.astimezone(tz).strftime(text("date.format", language)) if at else "—"


def role_phrase(prefix: str, role: str, language: str) -> str:
    """A role inside a sentence, with its article: after "to" (`prefix` "to") or "by"."""
    parts = []
    for r in role.split("+"):
        phrase = text(f"{prefix}.{r}", language)
        # A role the catalogue has no phrase for (the key comes back): its name.
        parts.append(role_name(r, language) if phrase == f"{prefix}.{r}" else phrase)
    return joined(parts, language)


def joined(parts: list[str], language: str) -> str:
    """ "a, b and c" in `language`."""
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} {text('and', language)} {parts[-1]}"


def stalled(n: NotificationState, now: datetime, late_after: timedelta = STALL_AFTER) -> bool:
    """Whether a notification failed, or has waited to be sent `late_after` or longer."""
    if n.status == "failed":
        return True
    return (
        n.status == "requested"
        and n.requested_at is not None
        and now - n.requested_at >= late_after
    )


def recheck_at(
    incident: IncidentState, now: datetime, late_after: timedelta = STALL_AFTER
) -> datetime | None:
    """When a send still pending turns late, so the page must say so with no new event."""
    pending = [
        n.requested_at + late_after
        for n in incident.notifications
        if n.status == "requested" and n.requested_at and n.requested_at + late_after > now
    ]
    if not incident.notifications and incident.recorded_at:
        pending.append(incident.recorded_at + late_after)
    future = [t for t in pending if t > now]
    return min(future) if future else None


def banner(
    incident: IncidentState,
    *,
    now: datetime,
    tz: tzinfo,
    language: str,
    phone: str | None,
    late_after: timedelta = STALL_AFTER,
) -> Banner:
    """The plain sentence that leads the page: sent or not, to whom, who confirmed, whom to
    call if nobody does, and a warning when sending is late (`late_after`)."""

    def t(key: str, **values: object) -> str:
        return text(key, language, **values)

    call = phone or t("banner.office")

    def at(moment: datetime | None) -> str:
        return local_time(moment, tz, language)

    if incident.status == "resolved":
        return Banner("resolved", [t("banner.resolved", time=at(incident.resolved_at))])
    alerts = [n for n in incident.notifications if n.kind == "alert"]
    sent = [n for n in alerts if n.status == "sent" and n.sent_at is not None]
    late = any(stalled(n, now, late_after) for n in incident.notifications) or (
        not incident.notifications
        and incident.recorded_at is not None
        and now - incident.recorded_at >= late_after
    )
    delayed = t("banner.delayed", phone=call) if late else None
    recheck = recheck_at(incident, now, late_after)
    missing = incident.missing_acks()
    if not sent:
        lines = [t("banner.received", time=at(incident.recorded_at))]
        lines.append(t("banner.keep_outside"))
        return Banner("delayed" if late else "received", lines, delayed, recheck)
    roles = list(dict.fromkeys(n.role for n in sent))
    whom = joined([role_phrase("to", r, language) for r in roles], language)
    first = min(n.sent_at for n in sent if n.sent_at is not None)
    key = "banner.sent_waiting" if missing else "banner.sent"
    lines = [t(key, time=at(first), whom=whom)]
    for a in incident.acknowledgements:
        lines.append(t("banner.confirmed", who=role_phrase("by", a.role, language), time=at(a.at)))
    if missing:
        lines.append(t("banner.keep_outside"))
        lines.append(t("banner.call_if", minutes=_call_minutes(incident), phone=call))
    elif incident.require_ack:
        lines.append(t("banner.all_confirmed"))
    tone = "delayed" if late else ("waiting" if missing else "confirmed")
    return Banner(tone, lines, delayed, recheck)


def _call_minutes(incident: IncidentState) -> int:
    """The minutes the rules give for a confirmation (their deadline after the report)."""
    if incident.ack_deadline and incident.recorded_at:
        seconds = (incident.ack_deadline - incident.recorded_at).total_seconds()
        if seconds > 0:
            return max(1, math.ceil(seconds / 60))
    return DEFAULT_CALL_MINUTES


def per_contact(incident: IncidentState) -> list[ContactRow]:
    """The notifications grouped per contact (first alerted first), each kind in order."""
    rows: dict[str, ContactRow] = {}
    for n in incident.notifications:
        row = rows.setdefault(n.contact_id, ContactRow(n.contact_id, n.role, []))
        if n.channel not in row.channels:
            row.channels.append(n.channel)
        row.items.append(n)
    return list(rows.values())
