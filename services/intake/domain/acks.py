"""Where acknowledgements are decided: an ack link's token and the incident it names become
an `incident.acknowledged` event, or a `Refused` saying why not (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from schemas.envelope import originating
from schemas.events import IncidentAcknowledged, IncidentAcknowledgedData, derive_id
from services.domain.incident import IncidentState
from services.domain.tokens import AckClaim, Keyring, TokenError, read_ack_token
from services.intake.domain.refusals import Refused

Via = Literal["link", "api"]

OTHER_INCIDENT = "the token is for another incident"
NOT_IN_LOG = "this incident is not in the log"
ALREADY_ACKNOWLEDGED = "already acknowledged: this link has been used"
RESOLVED = "the incident has been resolved; no acknowledgement needed"


def read_claim(
    keys: Keyring, token: str, *, now: datetime, incident_id: str | None = None
) -> AckClaim | Refused:
    """The claim a token carries; refused if forged, altered, malformed, expired, or (when
    `incident_id` is given) issued for another incident."""
    try:
        claim = read_ack_token(keys, token, now=now)
    except TokenError as exc:
        return Refused("bad_token", str(exc))
    if incident_id is not None and claim.incident_id != incident_id:
        return Refused("other_incident", OTHER_INCIDENT)
    return claim


def decide_ack(
    claim: AckClaim, incident: IncidentState | None, *, via: Via, now: datetime
) -> IncidentAcknowledged | Refused:
    """The acknowledgement a genuine claim records on `incident` (None: not in the log)."""
    if incident is None or incident.school_id != claim.school_id:
        return Refused("not_in_log", NOT_IN_LOG)
    if any(
        a.role == claim.role and a.contact_id == claim.contact_id for a in incident.acknowledgements
    ):
        return Refused("already_acknowledged", ALREADY_ACKNOWLEDGED)
    if incident.status == "resolved":
        return Refused("resolved", RESOLVED)
    return originating(
        IncidentAcknowledged,
        IncidentAcknowledgedData(
            role=claim.role,
            contact_id=claim.contact_id,
            notification_id=claim.notification_id,
            via=via,
        ),
        # Derived: the same link posted twice (a double click) makes the same event id, and
        # the log's duplicate window drops the second.
        id=derive_id(incident.incident_id, "acknowledged", claim.role, claim.contact_id),
        source="intake",
        incident_id=incident.incident_id,
        school_id=incident.school_id,
        now=now,
        actor=f"contact:{claim.contact_id}",
    )
