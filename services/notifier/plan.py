"""What goes to whom on which channel (pure): a notification request in, a planned delivery out.

`plan_delivery` is the one place where the contact's channel is picked and what goes out on it
is built, for an alert and for a pattern: the email (with the recipient's acknowledgement
link), the signed webhook's body, or the Apprise title and text. Webhooks, chat rooms and SMS
are shared places: they get no acknowledgement link (anyone there could use it), and chat
rooms no staff notes. main.py fetches what the plan needs from the log, carries the planned
delivery out and records the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

from schemas.events import (
    EncounterReported,
    EventDecodeError,
    NotificationRequested,
    PatternDetected,
    event_subject,
    parse_stored,
)
from services.domain.directory import (
    AppriseChannel,
    Contact,
    Directory,
    EmailChannel,
    WebhookChannel,
)
from services.domain.incident import IncidentState
from services.domain.protocol import label
from services.domain.tokens import AckClaim, Keyring, ViewClaim, ack_token, view_token
from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError
from services.notifier.message import AlertContext, build_email, build_pattern_email
from services.runtime.settings import Settings

# The To: of the email an Apprise text is taken from (it never goes to a mail server).
APPRISE_TO = "apprise@dooralert.invalid"


@dataclass(frozen=True)
class PlanSettings:
    """What the plan needs of the settings: where links point, how long ack and status
    links live, the sender, and the keys that sign the links."""

    base_url: str
    sender: str
    ack_link_days: int
    keys: Keyring = field(repr=False)
    view_link_days: float = 7.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanSettings:
        """The plan's settings out of the service's. Raises `InsecureSecretKey` when the
        secret key is missing, an example or too short."""
        return cls(
            base_url=settings.base_url,
            sender=settings.smtp_from,
            ack_link_days=settings.ack_link_days,
            keys=Keyring.of(settings.signing_keys()),
            view_link_days=settings.view_link_days,
        )


@dataclass(frozen=True)
class Found:
    """What main.py found in the log for a request (None: not there, or unreadable)."""

    report: EncounterReported | None = None  # the incident's report (alert kinds)
    state: IncidentState | None = None  # the folded incident (follow-ups only)
    pattern: bytes | None = None  # the stored pattern.detected event (pattern kind)
    notes: str | None = None  # staff notes opened from their seal (emails only)


@dataclass(frozen=True)
class EmailDelivery:
    message: EmailMessage


@dataclass(frozen=True)
class WebhookDelivery:
    url: str
    payload: Mapping[str, object]  # signed and timestamped when posted


@dataclass(frozen=True)
class AppriseDelivery:
    url: str
    title: str
    body: str


Delivery = EmailDelivery | WebhookDelivery | AppriseDelivery
Target = EmailChannel | WebhookChannel | AppriseChannel


def shows_current_report(request: NotificationRequested) -> bool:
    """Follow-ups show the report as it stands now, updates applied (the folded state)."""
    return request.data.kind in ("update", "resolved", "reopened")


def plan_delivery(
    request: NotificationRequested,
    found: Found,
    *,
    directory: Directory,
    settings: PlanSettings,
    now: datetime,
) -> Delivery:
    """What to send, where, for `request`. Raises PermanentDeliveryError when the contact or
    its channel is gone or the pattern unreadable, TransientDeliveryError when what the
    notification is about is not in the log yet."""
    contact, target = _recipient(request, directory)
    if request.data.kind == "pattern":
        pattern = _pattern(found.pattern, request)
        return _pattern_delivery(request, pattern, contact, target, directory, settings)
    if found.report is None:
        raise TransientDeliveryError("the incident's report is not in the log yet")
    report = found.report
    state = found.state if shows_current_report(request) else None
    if state is not None and state.report is not None:
        report = report.model_copy(update={"data": state.report})
    return _alert_delivery(
        request, report, contact, target, directory, settings, now, notes=found.notes
    )


def email_headers(
    request: NotificationRequested, directory: Directory, settings: PlanSettings
) -> tuple[str, str] | None:
    """The From and To an email request's email will have (what `plan_delivery` puts in
    them), before anything is read or made; None for other channels or an unknown contact."""
    if request.data.channel != "email":
        return None
    try:
        _, target = _recipient(request, directory)
    except PermanentDeliveryError:
        return None
    return (settings.sender, target.address) if isinstance(target, EmailChannel) else None


def email_addresses(directory: Directory) -> list[str]:
    """Every address the directory's contacts are emailed at (the To of their emails)."""
    return [
        channel.address
        for contact in directory.contacts
        for channel in contact.channels
        if isinstance(channel, EmailChannel)
    ]


def _recipient(request: NotificationRequested, directory: Directory) -> tuple[Contact, Target]:
    d = request.data
    contact = directory.contact(d.contact_id)
    if contact is None:
        raise PermanentDeliveryError(f'contact "{d.contact_id}" is not in district.yaml')
    target = next((c for c in contact.channels if c.type == d.channel), None)
    if target is None:
        raise PermanentDeliveryError(f'contact "{d.contact_id}" has no {d.channel} channel')
    return contact, target


def _pattern(raw: bytes | None, request: NotificationRequested) -> PatternDetected:
    if raw is None:
        raise TransientDeliveryError("the pattern event is not in the log yet")
    subject = event_subject(request.school_id, request.incident_id, "pattern.detected")
    try:
        pattern = parse_stored(raw, subject)
    except EventDecodeError as exc:
        raise PermanentDeliveryError(f"the pattern event is unreadable: {exc}") from None
    if not isinstance(pattern, PatternDetected):
        raise PermanentDeliveryError("the pattern subject holds another event type")
    return pattern


# --- an encounter: alert, escalation, update, all clear ---------------------------------------


def _alert_delivery(
    request: NotificationRequested,
    report: EncounterReported,
    contact: Contact,
    target: Target,
    directory: Directory,
    settings: PlanSettings,
    now: datetime,
    *,
    notes: str | None = None,
) -> Delivery:
    school = directory.school(request.school_id)
    school_name = school.name if school else request.school_id
    # Chat rooms and webhooks are shared places: their link opens the page without notes.
    shared = isinstance(target, WebhookChannel | AppriseChannel)
    status_url = view_url(request, settings, now=now, notes=not shared)
    if isinstance(target, WebhookChannel):
        # No ack link: webhooks often post into shared rooms (see the README).
        payload = webhook_payload(request, report, school_name=school_name, status_url=status_url)
        return WebhookDelivery(target.url, payload)
    ctx = AlertContext(
        district_name=directory.district.name,
        school_name=school_name,
        timezone=directory.district.timezone,
        recipient_name=contact.name_in(contact.language),
        status_url=status_url,
        emergency_phone=directory.district.emergency_phone,
        location=school.door_name(report.data.location, contact.language) if school else None,
    )
    if isinstance(target, AppriseChannel):
        # Chat rooms and SMS are shared places: the plain-text alert without staff notes
        # (never opened for them) and without the acknowledgement link.
        message = build_email(
            request=request,
            report=report,
            ctx=ctx,
            sender=settings.sender,
            to=APPRISE_TO,
            language=contact.language,
            ack_url=None,
        )
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        return AppriseDelivery(target.url, title=str(message["Subject"]), body=text)
    message = build_email(
        request=request,
        report=report,
        ctx=ctx,
        sender=settings.sender,
        to=target.address,
        language=contact.language,
        ack_url=ack_url(request, settings, now=now),
        notes=notes,
    )
    return EmailDelivery(message)


def view_url(
    request: NotificationRequested, settings: PlanSettings, *, now: datetime, notes: bool
) -> str:
    """The recipient's own status link: names the incident, the contact and the notification
    (a forwarded link is traced to whom it was sent), expires after `view_link_days`."""
    issued = int(now.timestamp())
    claim = ViewClaim(
        request.incident_id,
        recipient=request.data.contact_id,
        notification_id=request.data.notification_id,
        notes=notes,
        issued_at=issued,
        expires_at=issued + int(settings.view_link_days * 86400),
    )
    token = view_token(settings.keys, claim)
    return f"{settings.base_url}/incidents/{request.incident_id}?token={token}"


def ack_url(request: NotificationRequested, settings: PlanSettings, *, now: datetime) -> str | None:
    """The recipient's acknowledgement link: on a first alert, an escalation and a reopening
    (the agents are back: whoever has not confirmed is asked again), not on an update, the
    all-clear or a pattern (nothing to acknowledge there)."""
    d = request.data
    if d.kind not in ("alert", "escalation", "reopened"):
        return None
    expires = now + timedelta(days=settings.ack_link_days)
    claim = AckClaim(
        request.incident_id,
        request.school_id,
        d.role,
        d.contact_id,
        d.notification_id,
        int(expires.timestamp()),
    )
    return f"{settings.base_url}/ack/{ack_token(settings.keys, claim)}"


def webhook_payload(
    req: NotificationRequested, report: EncounterReported, *, school_name: str, status_url: str
) -> dict[str, object]:
    """The webhook body: the incident, never a person (no contact, no notes)."""
    r = report.data
    return {
        "type": "dooralert.alert",
        "kind": req.data.kind,
        "delivery_id": req.data.notification_id,
        "incident_id": req.incident_id,
        "school": {"id": req.school_id, "name": school_name},
        "severity": req.data.severity,
        "role": req.data.role,
        "routes": list(req.data.routes),
        "occurred_at": r.occurred_at.isoformat() if r.occurred_at else None,
        "report": {
            "location": r.location,
            "agency_stated": str(r.agency_stated.value),
            "agent_count": r.agent_count,
            "credentials_shown": r.credentials_shown,
            "document": str(r.document.value),
            "signed_by_judge": str(r.signed_by_judge.value),
            "purpose": str(r.purpose.value),
            "entry": str(r.entry.value),
        },
        "summary": (
            f"Agents at {school_name}: {label(r.agency_stated)}, {label(r.document)} - "
            f"{label(r.entry)}"
        ),
        "status_url": status_url,
    }


# --- encounters at several schools ------------------------------------------------------------


def _pattern_delivery(
    request: NotificationRequested,
    pattern: PatternDetected,
    contact: Contact,
    target: Target,
    directory: Directory,
    settings: PlanSettings,
) -> Delivery:
    names = {s.id: s.name for s in directory.schools}
    if isinstance(target, WebhookChannel):
        return WebhookDelivery(target.url, pattern_webhook_payload(request, pattern, names))
    if isinstance(target, AppriseChannel):
        title, body = pattern_text(pattern, names)
        return AppriseDelivery(target.url, title=title, body=body)
    ctx = AlertContext(
        district_name=directory.district.name,
        school_name="",
        timezone="UTC",
        recipient_name=contact.name_in(contact.language),
        status_url="",
        emergency_phone=directory.district.emergency_phone,
    )
    message = build_pattern_email(
        request=request,
        pattern=pattern,
        school_names=names,
        ctx=ctx,
        sender=settings.sender,
        to=target.address,
        language=contact.language,
    )
    return EmailDelivery(message)


def pattern_webhook_payload(
    req: NotificationRequested, pattern: PatternDetected, school_names: Mapping[str, str]
) -> dict[str, object]:
    """The webhook body for a pattern: the incidents and schools, never a person."""
    d = pattern.data
    return {
        "type": "dooralert.pattern",
        "kind": "pattern",
        "delivery_id": req.data.notification_id,
        "pattern": d.pattern,
        "window_minutes": d.window_minutes,
        "incident_ids": d.incident_ids,
        "schools": [{"id": s, "name": school_names.get(s, s)} for s in d.school_ids],
        "severity": d.severity,
    }


def pattern_text(pattern: PatternDetected, school_names: Mapping[str, str]) -> tuple[str, str]:
    """(title, body) of a pattern on a chat, push or SMS target."""
    d = pattern.data
    schools = ", ".join(school_names.get(s, s) for s in d.school_ids)
    return (
        f"dooralert: encounters at {len(d.school_ids)} schools",
        f"Agents reported at {schools} within {d.window_minutes} minutes.",
    )


__all__ = [
    "AppriseDelivery",
    "Delivery",
    "EmailDelivery",
    "Found",
    "PlanSettings",
    "WebhookDelivery",
    "ack_url",
    "email_addresses",
    "email_headers",
    "pattern_text",
    "pattern_webhook_payload",
    "plan_delivery",
    "shows_current_report",
    "view_url",
    "webhook_payload",
]
