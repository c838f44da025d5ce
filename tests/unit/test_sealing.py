"""Sealed notes (services/domain/sealing.py): open only with the incident's key, for the
event and field they were sealed for, and only within the retention."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import SealedText
from services.domain.sealing import (
    NotesUnavailable,
    decode_key,
    encode_key,
    new_key,
    open_sealed,
    seal,
)

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
KEY = new_key("inc-1", now=T0)
KEEP = timedelta(days=90)
TEXT = "Agents asked for the front office; a badge was shown"


def sealed() -> SealedText:
    return seal(TEXT, KEY, incident_id="inc-1", event_id="e-1", field="notes")


def opened(box: SealedText, **where: str) -> str:
    bound = {"incident_id": "inc-1", "event_id": "e-1", "field": "notes", **where}
    return open_sealed(box, KEY, now=T0, retention=KEEP, **bound)


def test_a_sealed_note_opens_with_its_key_and_hides_the_text() -> None:
    box = sealed()
    assert TEXT not in box.model_dump_json()
    assert opened(box) == TEXT


def test_two_seals_of_one_note_differ_so_equal_notes_cannot_be_spotted() -> None:
    assert sealed().ct != sealed().ct


@pytest.mark.parametrize(
    "where",
    [{"event_id": "e-2"}, {"incident_id": "inc-2"}, {"field": "note"}],
    ids=["another event", "another incident", "another field"],
)
def test_a_note_moved_elsewhere_does_not_open(where: dict[str, str]) -> None:
    with pytest.raises(NotesUnavailable, match="altered or moved"):
        opened(sealed(), **where)


def test_a_tampered_note_does_not_open() -> None:
    box = sealed()
    raw = bytearray(base64.b64decode(box.ct))
    raw[-1] ^= 1
    bad = box.model_copy(update={"ct": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(NotesUnavailable):
        opened(bad)


def test_without_the_key_or_after_the_retention_nothing_opens() -> None:
    box = sealed()
    with pytest.raises(NotesUnavailable, match="gone"):
        open_sealed(
            box, None, incident_id="inc-1", event_id="e-1", field="notes", now=T0, retention=KEEP
        )
    with pytest.raises(NotesUnavailable, match="expired"):
        open_sealed(
            box,
            KEY,
            incident_id="inc-1",
            event_id="e-1",
            field="notes",
            now=T0 + KEEP,
            retention=KEEP,
        )


def test_another_incidents_key_does_not_open_it() -> None:
    with pytest.raises(NotesUnavailable):
        open_sealed(
            sealed(),
            new_key("inc-1", now=T0 + timedelta(seconds=1)),
            incident_id="inc-1",
            event_id="e-1",
            field="notes",
            now=T0,
            retention=KEEP,
        )


def test_a_key_survives_the_bucket_round_trip() -> None:
    assert decode_key(encode_key(KEY)) == KEY
    with pytest.raises(ValueError):
        decode_key(b"kid\nAAAA\n2025-03-01T15:30:00+00:00")
