"""Notes keys made ahead for new incidents (services/intake/notes.py `KeysAhead`): each is
stored before it is handed out, handed out once, never after `max_age`, refilled as it is
used (several at a time), and a failure to make them only means reports make their own."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.domain.sealing import decode_key
from services.eventlog.notekeys import MemoryNoteKeys
from services.intake.notes import IntakeNotes, KeysAhead


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_key_made_ahead_is_stored_before_it_is_handed_out_and_only_once() -> None:
    keys = MemoryNoteKeys()
    ahead = KeysAhead(keys, size=4, delay=0)
    assert ahead.take() is None  # nothing made yet: the caller makes its own; filling starts
    await settle()
    assert len(keys.keys) == 4
    taken = [ahead.take() for _ in range(4)]
    ids = [t[0] for t in taken if t is not None]
    assert len(set(ids)) == 4
    for found in taken:
        assert found is not None
        incident_id, key = found
        stored = keys.keys[incident_id]
        assert decode_key(stored) == key and key.kid.startswith(incident_id + ".")


async def test_the_stock_is_refilled_once_half_used_several_at_a_time() -> None:
    keys = MemoryNoteKeys()
    ahead = KeysAhead(keys, size=4, delay=0)
    ahead.take()
    await settle()
    assert ahead.take() is not None  # 3 left: no refill yet
    await settle()
    assert len(keys.keys) == 4
    assert ahead.take() is not None  # 2 left: refilled up to 4
    await settle()
    assert len(keys.keys) == 6


async def test_a_key_older_than_max_age_is_never_handed_out() -> None:
    keys = MemoryNoteKeys()
    ahead = KeysAhead(keys, size=2, max_age=-1.0, delay=0)
    ahead.take()
    await settle()
    assert len(keys.keys) == 2
    assert ahead.take() is None  # both too old: left to expire, and more are made
    await settle()
    assert len(keys.keys) == 4


class FailingKeys(MemoryNoteKeys):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def create_if_absent(
        self, incident_id: str, value: bytes, *, likely_new: bool = False
    ) -> bytes:
        self.calls += 1
        raise TimeoutError


async def test_when_keys_cannot_be_made_ahead_reports_make_their_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = FailingKeys()
    ahead = KeysAhead(keys, size=2, delay=0)
    assert ahead.take() is None
    await settle()
    assert ahead.take() is None  # tried again
    await settle()
    assert keys.calls == 4
    logged = capsys.readouterr()
    assert "notes.keys_ahead_failed" in logged.out + logged.err


class StuckKeys(MemoryNoteKeys):
    async def create_if_absent(
        self, incident_id: str, value: bytes, *, likely_new: bool = False
    ) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError


async def test_closing_stops_making_keys() -> None:
    ahead = KeysAhead(StuckKeys(), size=2, delay=0)
    ahead.take()
    await settle()
    await asyncio.wait_for(ahead.close(), 1.0)


async def test_notes_without_keys_ahead_hand_out_none() -> None:
    assert IntakeNotes(MemoryNoteKeys(), timedelta(days=1)).new_incident() is None


def test_a_key_is_held_ahead_for_a_hundredth_of_the_retention_at_most() -> None:
    hour = IntakeNotes.with_keys_ahead(MemoryNoteKeys(), timedelta(hours=1))
    month = IntakeNotes.with_keys_ahead(MemoryNoteKeys(), timedelta(days=30))
    assert hour.ahead is not None and hour.ahead.max_age == 36.0
    assert month.ahead is not None and month.ahead.max_age == 60.0


async def test_no_keys_are_made_after_close() -> None:
    keys = MemoryNoteKeys()
    ahead = KeysAhead(keys, size=4, delay=0)
    await ahead.close()
    assert ahead.take() is None  # a report served during shutdown makes its own key
    await settle()
    assert keys.keys == {}
