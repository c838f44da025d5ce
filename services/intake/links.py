"""Status links: whether a link's view token opens an incident, and what it shows.

A link is made for one recipient (tokens.ViewClaim), expires, and stops working once a
`links.revoked` event for its recipient (or the whole incident) is in the log after it was
issued. A link sent to a shared place (chat, webhook) shows the incident without staff notes.
Staff signed in for the incident's school see everything, whatever link they followed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request

from services.domain.incident import IncidentState
from services.domain.tokens import TokenError, TokenExpired, ViewClaim, read_view_token
from services.intake.deps import Intake, read_session
from services.runtime.logging import get_logger

log = get_logger("dooralert.intake")


class LinkRefused(Exception):
    """A status link that does not open the incident: the i18n key and HTTP status to show."""

    def __init__(self, key: str, status: int, reason: str) -> None:
        super().__init__(reason)
        self.key, self.status, self.reason = key, status, reason


def read_link(intake: Intake, incident_id: str, token: str, *, now: datetime) -> ViewClaim:
    """The claim of a status link for `incident_id`; `LinkRefused` if forged or expired."""
    try:
        return read_view_token(intake.keys, token, incident_id=incident_id, now=now)
    except TokenExpired as exc:
        raise LinkRefused("link.expired", 410, str(exc)) from None
    except TokenError as exc:
        raise LinkRefused("link.invalid", 401, str(exc)) from None


def check_not_revoked(claim: ViewClaim, incident: IncidentState) -> None:
    """`LinkRefused` when the log revoked this link after it was issued."""
    if incident.link_revoked(claim.recipient, datetime.fromtimestamp(claim.issued_at, UTC)):
        raise LinkRefused("link.revoked", 410, "this link has been revoked")


def opened(claim: ViewClaim, incident: IncidentState) -> None:
    """Log who a link was made for each time it opens an incident (a forwarded link is
    traced to its recipient; pseudonymous ids only)."""
    log.info(
        "incident.viewed",
        incident=incident.incident_id,
        recipient=claim.recipient,
        notification=claim.notification_id,
        notes=claim.notes,
    )


def staff_of(intake: Intake, request: Request, incident: IncidentState) -> bool:
    """Whether the request's session is staff of the incident's school."""
    session = read_session(intake, request).session
    return session is not None and session.school_id == incident.school_id


def without_notes(incident: IncidentState) -> IncidentState:
    """The incident as a shared room may see it: no staff notes in the report or updates."""
    report = incident.report.model_copy(update={"notes": None}) if incident.report else None
    updates = [{k: v for k, v in u.items() if k != "notes"} for u in incident.updates]
    return incident.model_copy(update={"report": report, "updates": updates})


def shown(intake: Intake, request: Request, incident: IncidentState) -> IncidentState:
    """What this request may see of `incident`: all of it for the school's staff or a link
    that shows notes; without notes for a link to a shared place (or one no longer valid)."""
    if staff_of(intake, request, incident):
        return incident
    token = request.query_params.get("token")
    try:
        claim = read_link(intake, incident.incident_id, token or "", now=datetime.now(UTC))
        check_not_revoked(claim, incident)
    except LinkRefused:
        return without_notes(incident)
    return incident if claim.notes else without_notes(incident)
