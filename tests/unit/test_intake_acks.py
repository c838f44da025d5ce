"""Where acknowledgements are decided (services/intake/domain/acks.py): a genuine, unused
link on an open incident records one acknowledgement; everything else is refused, typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import (
    Event,
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    IncidentResolved,
    SealedResolvedData,
    derive_id,
    serialize_event,
)
from services.domain.incident import IncidentState, fold
from services.domain.tokens import AckClaim, Keyring, ack_token
from services.intake.domain.acks import decide_ack, read_claim
from services.intake.domain.refusals import Refused
from services.intake.reports import encounter_event, parse_report
from tests.support import TEST_KEYS, report

SECRET = TEST_KEYS
T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
CLAIM = AckClaim(
    "inc-1", "hamline", "law", "law-dept", "n-1", int((T0 + timedelta(hours=1)).timestamp())
)


def reported() -> Event:
    return encounter_event(
        parse_report(report(), now=T0), incident_id="inc-1", actor="intake-key:x", now=T0
    )


def incident(*more: Event) -> IncidentState:
    state = fold([reported(), *more])
    assert state is not None
    return state


def test_a_genuine_token_gives_its_claim() -> None:
    assert read_claim(SECRET, ack_token(SECRET, CLAIM), now=T0) == CLAIM


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("garbage", "not issued by this district"),
        (ack_token(Keyring.of(["another-district-secret-key-0123456789"]), CLAIM), "not issued"),
        (ack_token(SECRET, CLAIM)[:-3] + "AAA", "altered"),
    ],
)
def test_forged_or_altered_tokens_are_refused_with_400(token: str, words: str) -> None:
    refused = read_claim(SECRET, token, now=T0)
    assert isinstance(refused, Refused)
    assert refused.kind == "bad_token" and refused.status == 400 and words in refused.message


def test_an_expired_token_is_refused_and_says_to_call() -> None:
    refused = read_claim(SECRET, ack_token(SECRET, CLAIM), now=T0 + timedelta(hours=2))
    assert isinstance(refused, Refused) and refused.status == 400
    assert "expired" in refused.message and "calling the district" in refused.message


def test_a_token_for_another_incident_is_refused_with_400() -> None:
    refused = read_claim(SECRET, ack_token(SECRET, CLAIM), now=T0, incident_id="inc-2")
    assert refused == Refused("other_incident", "the token is for another incident")
    assert refused.status == 400


def test_an_incident_missing_from_the_log_or_of_another_school_is_404() -> None:
    for state in (None, incident().model_copy(update={"school_id": "lincoln-park"})):
        refused = decide_ack(CLAIM, state, via="link", now=T0)
        assert isinstance(refused, Refused) and refused.status == 404
        assert refused.message == "this incident is not in the log"


def test_a_used_link_is_refused_with_409() -> None:
    first = decide_ack(CLAIM, incident(), via="link", now=T0)
    assert isinstance(first, IncidentAcknowledged)
    again = decide_ack(CLAIM, incident(first), via="api", now=T0)
    assert isinstance(again, Refused) and again.kind == "already_acknowledged"
    assert again.status == 409 and again.message == "already acknowledged: this link has been used"


def test_a_resolved_incident_needs_no_acknowledgement_409() -> None:
    resolved = IncidentResolved(
        id="r-1",
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=T0,
        recorded_at=T0,
        correlation_id="inc-1",
        actor="intake-key:x",
        data=SealedResolvedData(),
    )
    refused = decide_ack(CLAIM, incident(resolved), via="link", now=T0)
    assert isinstance(refused, Refused) and refused.status == 409
    assert refused.message == "the incident has been resolved; no acknowledgement needed"


def test_the_acknowledgement_event_is_the_one_the_intake_always_recorded() -> None:
    event = decide_ack(CLAIM, incident(), via="link", now=T0)
    # The envelope exactly as the intake built it by hand before the event factory.
    expected = IncidentAcknowledged(
        id=derive_id("inc-1", "acknowledged", "law", "law-dept"),
        data=IncidentAcknowledgedData(
            role="law", contact_id="law-dept", notification_id="n-1", via="link"
        ),
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=T0,
        recorded_at=T0,
        correlation_id="inc-1",
        actor="contact:law-dept",
    )
    assert isinstance(event, IncidentAcknowledged)
    assert serialize_event(event) == serialize_event(expected)


def test_the_same_link_twice_makes_the_same_event_id() -> None:
    a = decide_ack(CLAIM, incident(), via="link", now=T0)
    b = decide_ack(CLAIM, incident(), via="api", now=T0 + timedelta(seconds=1))
    assert isinstance(a, IncidentAcknowledged) and isinstance(b, IncidentAcknowledged)
    assert a.id == b.id
