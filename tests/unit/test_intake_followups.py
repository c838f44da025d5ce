"""Staff follow-ups (services/intake/domain/followups.py): an update or the all-clear on an
open incident becomes one event; a resolved incident or bad data is refused, typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import (
    EncounterUpdated,
    Event,
    IncidentResolved,
    SealedResolvedData,
    SealedText,
    SealedUpdateData,
    serialize_event,
)
from services.domain.incident import IncidentState, fold
from services.domain.notes import open_notes
from services.domain.sealing import NotesUnavailable, new_key, seal
from services.intake.domain.followups import decide_follow_up
from services.intake.domain.refusals import Refused
from services.intake.reports import encounter_event, parse_report
from tests.support import report

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
ACTOR = "intake-key:abc123"


def incident(*more: Event) -> IncidentState:
    first = encounter_event(
        parse_report(report(), now=T0), incident_id="inc-1", actor=ACTOR, now=T0
    )
    state = fold([first, *more])
    assert state is not None
    return state


KEY = new_key("inc-1", now=T0)


def seal_notes(text: str, *, event_id: str, field: str) -> SealedText:
    return seal(text, KEY, incident_id="inc-1", event_id=event_id, field=field)


def decide(raw: Any, *, resolve: bool, state: IncidentState | None = None) -> Any:
    return decide_follow_up(
        state or incident(),
        raw,
        resolve=resolve,
        actor=ACTOR,
        now=T0,
        event_id="e-1",
        seal=seal_notes,
    )


def opened(event: Event) -> str | None:
    return open_notes(event, KEY, now=T0, retention=timedelta(days=90))


def hand_built(cls: Any, data: Any) -> Event:
    """The envelope exactly as the intake built it by hand before the event factory."""
    event: Event = cls(
        id="e-1",
        data=data,
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=T0,
        recorded_at=T0,
        correlation_id="inc-1",
        actor=ACTOR,
    )
    return event


def test_an_update_becomes_the_event_the_intake_always_recorded() -> None:
    event = decide({"entry": "left"}, resolve=False)
    assert isinstance(event, EncounterUpdated)
    expected = hand_built(EncounterUpdated, SealedUpdateData(entry="left"))
    assert serialize_event(event) == serialize_event(expected)


@pytest.mark.parametrize("raw", [None, {}, {"note": "agents gone"}])
def test_resolving_needs_no_body_and_keeps_a_note_sealed(raw: Any) -> None:
    event = decide(raw, resolve=True)
    assert isinstance(event, IncidentResolved)
    note = (raw or {}).get("note")
    assert opened(event) == note
    assert "agents gone" not in serialize_event(event).decode()
    expected = hand_built(IncidentResolved, SealedResolvedData(note_sealed=event.data.note_sealed))
    assert serialize_event(event) == serialize_event(expected)


def test_an_update_note_is_stored_only_sealed_and_opens_for_its_own_event() -> None:
    event = decide({"entry": "left", "notes": "agents drove off"}, resolve=False)
    assert isinstance(event, EncounterUpdated)
    assert "agents drove off" not in serialize_event(event).decode()
    assert opened(event) == "agents drove off"
    moved = event.model_copy(update={"id": "e-2"})
    with pytest.raises(NotesUnavailable):
        opened(moved)


def test_a_note_without_a_sealer_is_never_recorded_in_clear() -> None:
    with pytest.raises(ValueError, match="sealed"):
        decide_follow_up(
            incident(), {"notes": "x"}, resolve=False, actor=ACTOR, now=T0, event_id="e-1"
        )


@pytest.mark.parametrize("resolve", [False, True])
def test_nothing_more_is_recorded_on_a_resolved_incident_409(resolve: bool) -> None:
    done = decide(None, resolve=True)
    refused = decide({"entry": "left"}, resolve=resolve, state=incident(done))
    assert refused == Refused("resolved", "the incident is already resolved")
    assert refused.status == 409


def test_an_update_that_changes_nothing_is_refused_with_422() -> None:
    refused = decide({}, resolve=False)
    assert isinstance(refused, Refused) and refused.status == 422
    assert refused.fields == ({"field": "(body)", "reason": "nothing changed"},)


def test_bad_fields_are_named_each_with_its_reason() -> None:
    refused = decide({"agent_count": 0, "immigration_status": "x"}, resolve=False)
    assert isinstance(refused, Refused) and refused.kind == "invalid"
    fields = {f["field"]: f["reason"] for f in refused.fields}
    assert set(fields) == {"agent_count", "immigration_status"}
    assert "not accepted" in fields["immigration_status"]
    assert refused.message.startswith("agent_count: ")


def test_a_body_that_is_not_an_object_is_refused() -> None:
    refused = decide(["left"], resolve=False)
    assert isinstance(refused, Refused) and refused.status == 422
