"""The incident page's live stream: capped per link and per address, and served from one
shared reader per incident however many people watch, stopping when the last one leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from schemas.events import Event
from services.domain.directory import load_directory
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES, HAMLINE_KEY, report

AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}


class CountingEventLog(FakeEventLog):
    """The in-memory log, counting how often an incident's events are read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read_incident(self, incident_id: str) -> list[Event]:
        self.reads += 1
        return await super().read_incident(incident_id)


@dataclass
class Live:
    app: FastAPI
    log: CountingEventLog
    events_path: str  # the incident's stream, with its link's token

    def client(self, address: str = "10.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://intake")

    async def watch(self, address: str = "10.0.0.1") -> httpx.Response:
        """One viewer's whole stream (it ends after live_max_seconds)."""
        async with self.client(address) as viewer:
            return await viewer.get(self.events_path)

    @property
    def pollers(self) -> int:
        return int(self.app.state.intake.live.pollers)


@pytest.fixture
async def live() -> AsyncIterator[Callable[..., Awaitable[Live]]]:
    """Make an intake app with one reported incident; streams last `live_max_seconds`."""
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> Live:
            settings = Settings(
                config_dir=EXAMPLES,
                secret_key=SecretStr("s" * 48),
                live_poll_seconds=0.05,
                live_max_seconds=0.6,
            ).model_copy(update=options)
            log = CountingEventLog()
            app = create_app(settings, directory=load_directory(EXAMPLES), event_log=log)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as api:
                made = await api.post("/api/v1/encounters", json=report(), headers=AUTH)
            assert made.status_code == 202, made.text
            page = urlsplit(made.json()["page_url"])
            return Live(app, log, f"{page.path}/events?{page.query}")

        yield make


async def test_a_fourth_stream_on_one_link_is_refused_while_three_are_open(live):
    lv = await live(live_streams_per_token=3, live_streams_per_client=0)
    # Four viewers behind four addresses, all on the one link.
    answers = await asyncio.gather(*(lv.watch(f"10.0.0.{i}") for i in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert "too many live streams" in refused.text and refused.headers["retry-after"]
    # Once they have closed, the link streams again.
    assert (await lv.watch()).status_code == 200


async def test_one_address_may_hold_only_its_cap_of_streams(live):
    lv = await live(live_streams_per_token=0, live_streams_per_client=2)
    answers = await asyncio.gather(*(lv.watch("10.0.0.7") for _ in range(3)), lv.watch("10.0.0.8"))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 429]
    assert answers[-1].status_code == 200  # another address is not held back


async def test_many_viewers_share_one_reader_and_all_see_an_update(live):
    lv = await live(live_streams_per_token=0, live_streams_per_client=0, live_max_seconds=1.0)
    before = lv.log.reads

    async def update_midway() -> None:
        await asyncio.sleep(0.4)
        async with lv.client() as api:
            incident_id = lv.events_path.split("/")[2]
            resp = await api.post(
                f"/api/v1/incidents/{incident_id}/updates", json={"entry": "left"}, headers=AUTH
            )
            assert resp.status_code == 202, resp.text

    *answers, _ = await asyncio.gather(*(lv.watch() for _ in range(8)), update_midway())
    # Each viewer reads once to open (who may see it); then one poller reads every 0.05 s for
    # all eight: about 20 reads in 1 s, where a reader per viewer would make 160.
    polls = lv.log.reads - before - 8 - 2  # opening reads; the update reads the incident too
    assert polls <= 1.0 / 0.05 + 5, polls
    for answer in answers:
        assert answer.status_code == 200
        assert answer.text.count("event: status") == 2  # the first state, then the update


async def test_the_reader_stops_when_the_last_viewer_leaves(live):
    lv = await live(live_max_seconds=0.3)
    await asyncio.gather(lv.watch(), lv.watch())
    assert lv.pollers == 0
    reads = lv.log.reads
    await asyncio.sleep(0.3)
    assert lv.log.reads == reads
