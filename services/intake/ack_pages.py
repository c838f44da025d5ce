"""The page an acknowledgement link opens: which incident it is about (school, time, what was
reported, who else confirmed, a link to the incident), in the recipient's language, and in
words that fit a link when the link is refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from services.domain.i18n import is_language
from services.domain.incident import IncidentState
from services.domain.tokens import (
    AckClaim,
    TokenError,
    TokenExpired,
    ViewClaim,
    read_ack_token,
    view_token,
)
from services.intake.deps import Intake
from services.intake.domain.refusals import Refused
from services.intake.render import language, render, translations
from services.intake.status_view import local_datetime, local_time, role_phrase

# A refusal's words, by kind; a bad token is told apart by whether it only expired.
REFUSAL_KEYS = {
    "other_incident": "ack.other_incident",
    "not_in_log": "ack.not_in_log",
    "already_acknowledged": "ack.used",
    "resolved": "ack.resolved",
}

# Far in the past: a genuine token read "at" this moment has not expired, so an expired
# link still tells whose it was (for the page's language only; nothing is recorded).
_EPOCH = datetime.fromtimestamp(0, UTC)


def claim_of(intake: Intake, token: str) -> AckClaim | None:
    """The claim of a genuine token, expired or not (None if forged or malformed)."""
    try:
        return read_ack_token(intake.keys, token, now=_EPOCH)
    except TokenError:
        return None


def refusal_key(intake: Intake, token: str, refused: Refused) -> str:
    """The catalogue key that says, in words fit for a link, why it was refused."""
    if refused.kind == "bad_token":
        try:
            read_ack_token(intake.keys, token, now=datetime.now(UTC))
        except TokenExpired:
            return "ack.expired"
        except TokenError:
            return "ack.invalid"
    return REFUSAL_KEYS.get(refused.kind, "ack.invalid")


def page_language(intake: Intake, request: Request, claim: AckClaim | None) -> str:
    """`?lang=` if given, else the recipient's language from district.yaml, else (a link
    that names nobody: forged or cut short) the browser's language."""
    asked = request.query_params.get("lang")
    if is_language(asked):
        return asked
    contact = intake.directory.contact(claim.contact_id) if claim else None
    return contact.language if contact else language(request)[0]


def incident_link(intake: Intake, claim: AckClaim, incident: IncidentState) -> str | None:
    """A status link for the recipient (without staff notes: it may be opened anywhere),
    living no longer than the ack link; none once the district revoked their links (a link
    minted now would postdate the revocation and slip past it)."""
    if any(r.recipient in (None, claim.contact_id) for r in incident.links_revoked):
        return None
    now = int(time.time())
    view = ViewClaim(
        claim.incident_id,
        recipient=claim.contact_id,
        notification_id=claim.notification_id,
        notes=False,
        issued_at=now,
        expires_at=min(claim.expires_at, now + int(intake.settings.view_link_days * 86400)),
    )
    return f"/incidents/{claim.incident_id}?token={view_token(intake.keys, view)}"


def context(
    intake: Intake, claim: AckClaim | None, incident: IncidentState | None, lang: str
) -> dict[str, Any]:
    """What the page shows about the incident, when the link names one that is in the log."""
    if claim is None or incident is None or incident.school_id != claim.school_id:
        return {"incident": None}
    school = intake.directory.school(incident.school_id)
    tz = intake.timezone
    at = partial(local_time, tz=tz, language=lang)
    confirmed = [
        f"{role_phrase('by', a.role, lang)} ({_name(intake, a.contact_id, lang)}) — {at(a.at)}"
        for a in incident.acknowledgements
    ]
    return {
        "incident": incident,
        "report": incident.report,
        "school_name": school.name if school else incident.school_id,
        # A door of the school reads in the page's language (the report keeps its id).
        "where": school.door_name(incident.report.location, lang)
        if school and incident.report
        else (incident.report.location if incident.report else ""),
        "reported": local_datetime(incident.recorded_at, tz, lang),
        "confirmed": confirmed,
        "incident_url": incident_link(intake, claim, incident),
    }


def _name(intake: Intake, contact_id: str, lang: str) -> str:
    contact = intake.directory.contact(contact_id)
    return contact.name_in(lang) if contact else contact_id


def ack_page(
    intake: Intake,
    request: Request,
    token: str,
    *,
    outcome: str | Refused,
    incident: IncidentState | None,
) -> HTMLResponse:
    """The link's page: "confirm" asks, "acknowledged" thanks, a `Refused` explains."""
    claim = claim_of(intake, token)
    lang = page_language(intake, request, claim)
    status = 200
    message = None
    if isinstance(outcome, Refused):
        status, message = outcome.status, refusal_key(intake, token, outcome)
    ctx = {
        **translations(lang),
        "switch_url": f"{request.url.path}?lang={'es' if lang == 'en' else 'en'}",
        **context(intake, claim, incident, lang),
        "token": token,
        "state": outcome if isinstance(outcome, str) else "refused",
        "message_key": message,
        "phone": intake.phone or "",
    }
    return render(intake, request, "ack.html", ctx, status=status)
