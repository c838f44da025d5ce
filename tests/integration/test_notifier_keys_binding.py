"""The notifier opens the notes keys' bucket once (handler.Notifier._keys), on a real
nats-server: a first burst's handlers all asking at once share one lookup (a STREAM.INFO
each otherwise), a lookup that failed is tried again by the next email, and the bucket opened
is the real one (a key stored through it reads back)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from services.eventlog.notekeys import JetStreamNoteKeys
from services.notifier.main import build_notifier
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import test_directory


async def test_handlers_asking_at_once_open_the_keys_bucket_once_and_retry_a_failure(
    settings: Settings,
    js: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[float] = []
    real_open = JetStreamNoteKeys.open

    async def counted(js: JetStreamContext, *, retry_for: float) -> JetStreamNoteKeys:
        opened.append(retry_for)
        await asyncio.sleep(0.05)  # long enough for every caller to be waiting on it
        if len(opened) == 1:
            raise NatsTimeoutError  # the first lookup fails: the next caller looks again
        return await real_open(js, retry_for=retry_for)

    monkeypatch.setattr(JetStreamNoteKeys, "open", staticmethod(counted))
    broker, notifier = build_notifier(settings, directory=test_directory(tmp_path, "http://x"))
    await broker.connect()
    try:
        with pytest.raises(NatsTimeoutError):
            await notifier._keys()
        assert len(opened) == 1
        bound = await asyncio.gather(*(notifier._keys() for _ in range(16)))
        assert len(opened) == 2  # sixteen at once, one lookup
        assert all(keys is bound[0] for keys in bound)
        assert await notifier._keys() is bound[0]  # and none after
        assert len(opened) == 2

        key = b"k" * 32
        assert await bound[0].create_if_absent("inc-binding", key) == key
        assert await bound[0].get("inc-binding") == key
    finally:
        await broker.stop()
        await notifier.close()
