"""Notes keys read by direct get (2f4742b, notekeys.JetStreamNoteKeys.get) give nats-py's
KeyValue.get answers for every state of a key, on a real nats-server: present, deleted,
purged, expired (the bucket's max age), never made, and an invalid key (refused the same
way, never asked of the server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import InvalidKeyError, KeyNotFoundError

from services.eventlog.notekeys import JetStreamNoteKeys


async def kv_answer(kv: Any, key: str) -> bytes | None:
    """What `get` answered before 2f4742b: nats-py's KeyValue.get."""
    try:
        return (await kv.get(key)).value or None
    except KeyNotFoundError:
        return None


async def test_every_state_of_a_key_reads_as_nats_py_reads_it(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv: Any = await js.create_key_value(KeyValueConfig(bucket="NK_STATES", ttl=1.0, direct=True))
    assert kv._direct
    keys = JetStreamNoteKeys(kv, retry_for=0.5)
    await kv.put("present", b"p" * 32)
    await kv.put("deleted", b"d" * 32)
    await kv.delete("deleted")
    await kv.put("purged", b"u" * 32)
    await kv.purge("purged")
    await kv.put("empty", b"")
    expected = {"present": b"p" * 32, "deleted": None, "purged": None, "empty": None}
    expected["never"] = None
    for key, value in expected.items():
        assert await kv_answer(kv, key) == value, key
    real_get = kv.get

    async def not_used(*args: object, **kwargs: object) -> None:
        raise AssertionError("KeyValue.get used")

    monkeypatch.setattr(kv, "get", not_used)
    for key, value in expected.items():
        assert await keys.get(key) == value, key

    await asyncio.sleep(1.5)  # past the bucket's max age: every key expired
    assert await keys.get("present") is None
    monkeypatch.setattr(kv, "get", real_get)
    assert await kv_answer(kv, "present") is None

    for invalid in ("a b", "", "x.*", "inc>"):
        with pytest.raises(InvalidKeyError):
            await kv.get(invalid)
        with pytest.raises(InvalidKeyError):
            await keys.get(invalid)
