"""The services' event loop: uvloop when installed unless DOORALERT_EVENT_LOOP=asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from services.runtime import eventloop
from services.runtime.settings import Settings


@pytest.fixture(autouse=True)
def default_policy() -> Iterator[None]:
    yield
    asyncio.set_event_loop_policy(None)


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_auto_runs_asyncio_run_on_uvloop() -> None:
    assert eventloop.install("auto") == "uvloop"
    assert issubclass(asyncio.run(_loop_type()), uvloop.Loop)


def test_asyncio_keeps_the_standard_loop() -> None:
    eventloop.install("uvloop")
    assert eventloop.install("asyncio") == "asyncio"
    assert not issubclass(asyncio.run(_loop_type()), uvloop.Loop)


def test_uvloop_missing_is_refused_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventloop.importlib.util, "find_spec", lambda name: None)
    assert eventloop.chosen("auto") == "asyncio"
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        eventloop.chosen("uvloop")


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().event_loop == "auto"
    monkeypatch.setenv("DOORALERT_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("DOORALERT_EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
