"""Building an alert email (pure): the report and recipient in, a MIME message out."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from schemas.events import EncounterReported, NotificationRequested
from services.common.protocol import PROTOCOL, label

TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"], default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["label"] = label


def header_safe(text: str, limit: int = 200) -> str:
    """One line, no control characters: nothing a field holds can add a header."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:limit]


@dataclass(frozen=True)
class AlertContext:
    district_name: str
    school_name: str
    timezone: str
    recipient_name: str
    status_url: str
    emergency_phone: str | None


def message_id(notification_id: str) -> str:
    """Derived from the notification id, so a re-sent alert is recognisably the same one."""
    return f"<{notification_id}@dooralert>"


def build_email(
    *,
    request: NotificationRequested,
    report: EncounterReported,
    ctx: AlertContext,
    sender: str,
    to: str,
) -> EmailMessage:
    r = report.data
    assert r.occurred_at is not None
    local = r.occurred_at.astimezone(ZoneInfo(ctx.timezone))
    values = {
        "r": r,
        "ctx": ctx,
        "severity": request.data.severity,
        "role": request.data.role,
        "when": local.strftime("%Y-%m-%d %H:%M %Z"),
        "protocol": PROTOCOL[r.document],
        "incident_id": report.incident_id,
    }
    msg = EmailMessage()
    prefix = "CRITICAL" if request.data.severity == "critical" else "ALERT"
    msg["Subject"] = header_safe(
        f"[dooralert {prefix}] Agents at {ctx.school_name}: {label(r.agency_stated)}, "
        f"{label(r.document)} - {label(r.entry)}"
    )
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(request.recorded_at)
    msg["Message-ID"] = message_id(request.data.notification_id)
    msg["X-Dooralert-Incident"] = report.incident_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(_env.get_template("alert.txt").render(values))
    msg.add_alternative(_env.get_template("alert.html").render(values), subtype="html")
    return msg


__all__ = ["AlertContext", "build_email", "header_safe", "make_msgid", "message_id"]
