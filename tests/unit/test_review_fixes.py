"""Findings of the session review, each pinned by the behaviour a user would notice."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas.events import EncounterUpdatedData, EventDecodeError, IncidentResolvedData, parse_event
from services.runtime.settings import Settings
from tests.support import TEST_SECRET


def test_a_dead_letter_reason_never_quotes_the_rejected_text() -> None:
    event = {
        "id": "e1",
        "type": "encounter.updated",
        "schema_version": 1,
        "source": "intake",
        "incident_id": "inc-1",
        "school_id": "hamline",
        "occurred_at": "2025-03-01T15:30:00Z",
        "recorded_at": "2025-03-01T15:30:00Z",
        "correlation_id": "inc-1",
        "actor": "key-x",
        "data": {"agent_count": "Maria Lopez 651-555-0199"},
    }
    with pytest.raises(EventDecodeError) as caught:
        parse_event(json.dumps(event))
    reason = str(caught.value)
    assert "agent_count" in reason  # where
    assert "Maria" not in reason and "651-555" not in reason  # never what


@pytest.mark.parametrize("model", [EncounterUpdatedData, IncidentResolvedData])
def test_follow_up_notes_refuse_control_characters(model: type) -> None:
    field = "notes" if model is EncounterUpdatedData else "note"
    with pytest.raises(ValidationError):
        model(**{field: "agents left\x00"})
    assert getattr(model(**{field: "left by\nthe gym door"}), field).startswith("left")


def test_webhook_receivers_never_hold_a_signing_key() -> None:
    settings = Settings(secret_key=TEST_SECRET)  # type: ignore[arg-type]  # SecretStr from str
    webhook = settings.webhook_signing_secret()
    assert webhook not in settings.signing_keys()
    assert webhook == settings.webhook_signing_secret()  # stable: receivers can keep it
    rotated = Settings(secret_keys=["n" * 40, TEST_SECRET])
    assert rotated.webhook_signing_secret() != webhook  # follows the signing key


def test_one_contact_in_retry_backoff_is_not_a_stalled_pipeline() -> None:
    settings = Settings(secret_key=TEST_SECRET)  # type: ignore[arg-type]  # SecretStr from str
    schedule = sum(
        min(settings.retry_base_seconds * 2 ** (n - 1), settings.retry_max_seconds)
        for n in range(1, settings.max_attempts)
    )
    assert settings.unacked_limit() > schedule
    assert Settings(pipeline_unacked_seconds=30).unacked_limit() == 30
