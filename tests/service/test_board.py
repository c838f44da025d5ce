"""The district board: every school's open incidents, waiting ones first and newest first,
resolved and old ones left out, only for holders of a district board key."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr

from schemas.envelope import about_incident
from schemas.events import (
    Event,
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    IncidentResolved,
    SealedResolvedData,
)
from services.domain.board_pass import link_token
from services.domain.directory import load_directory
from services.eventlog.interface import StoredMessage, TailReset
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog, FakeTail
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY, report, utcnow

BOARD_KEY = "demo-district-board-key"
KEYS = {"hamline": HAMLINE_KEY, "lincoln-park": LINCOLN_KEY}


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    settings = Settings(
        config_dir=EXAMPLES,
        secret_key=SecretStr("s" * 48),
        live_poll_seconds=0.05,
        live_max_seconds=1.0,
    )
    made = create_app(settings, directory=load_directory(EXAMPLES), event_log=FakeEventLog())
    async with made.router.lifespan_context(made):
        yield made


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


async def reported(app: FastAPI, school: str, *, minutes_ago: float) -> str:
    when = (utcnow() - timedelta(minutes=minutes_ago)).isoformat()
    async with client(app) as api:
        made = await api.post(
            "/api/v1/encounters",
            json=report(school_id=school, occurred_at=when),
            headers={"Authorization": f"Bearer {KEYS[school]}"},
        )
    assert made.status_code == 202, made.text
    return str(made.json()["incident_id"])


async def append(
    app: FastAPI, cls: type[Event], data: BaseModel, school: str, incident: str
) -> None:
    event = about_incident(
        cls,
        data,
        id=f"{cls.__name__}-{incident}",
        source="intake",
        incident_id=incident,
        school_id=school,
        causation_id=None,
        now=utcnow(),
        actor="law-dept",
    )
    await app.state.event_log.append(event)


async def sign_in(board: httpx.AsyncClient, key: str = BOARD_KEY) -> httpx.Response:
    page = await board.get("/board")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None, page.text
    return await board.post("/board/signin", data={"csrf_token": csrf[1], "board_key": key})


def listed(page: httpx.Response) -> list[str]:
    return re.findall(r'data-incident="([^"]+)"', page.text)


async def test_the_board_lists_open_incidents_of_every_school_waiting_first_newest_first(app):
    oldest_waiting = await reported(app, "hamline", minutes_ago=30)
    confirmed = await reported(app, "lincoln-park", minutes_ago=10)
    newest_waiting = await reported(app, "hamline", minutes_ago=5)
    resolved = await reported(app, "lincoln-park", minutes_ago=2)
    ack = IncidentAcknowledgedData(role="law", contact_id="law-dept", via="link")
    await append(app, IncidentAcknowledged, ack, "lincoln-park", confirmed)
    await append(app, IncidentResolved, SealedResolvedData(), "lincoln-park", resolved)

    async with client(app) as board:
        signed = await sign_in(board)
        assert signed.status_code == 303
        page = await board.get("/board")

    assert page.status_code == 200
    assert listed(page) == [newest_waiting, oldest_waiting, confirmed]
    assert resolved not in page.text
    assert "Hamline Elementary" in page.text and "Lincoln Park High" in page.text
    assert "Law Department (on call)" in page.text  # who confirmed, by name
    assert "3 open, 2 waiting for a confirmation" in page.text


async def test_a_board_row_opens_its_incident_page_without_a_school_sign_in(app):
    incident = await reported(app, "lincoln-park", minutes_ago=1)
    async with client(app) as board:
        await sign_in(board)
        page = await board.get("/board")
        link = re.search(r'href="(/incidents/' + incident + r'\?token=[^"]+)"', page.text)
        assert link is not None
        opened = await board.get(link[1].replace("&amp;", "&"))
    assert opened.status_code == 200 and "Lincoln Park High" in opened.text


async def test_the_board_shows_times_in_the_districts_zone_and_speaks_spanish(app):
    await reported(app, "hamline", minutes_ago=1)
    async with client(app) as board:
        await sign_in(board)
        page = await board.get("/board?lang=es")
    assert "Tablero del distrito" in page.text and "Orden administrativa" in page.text
    shown = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', page.text)
    assert shown is not None
    # America/Chicago is 5 or 6 hours behind UTC: the shown hour is not the UTC hour.
    assert shown[1][11:13] != shown[2][11:13]


async def test_without_a_board_key_the_board_asks_to_sign_in_and_shows_nothing(app):
    incident = await reported(app, "hamline", minutes_ago=1)
    async with client(app) as board:
        page = await board.get("/board")
        wrong = await sign_in(board, key=HAMLINE_KEY)  # a school's key is not a board key
        after = await board.get("/board")
        stream = await board.get("/board/events")
    assert page.status_code == 200 and 'name="board_key"' in page.text
    assert incident not in page.text
    assert wrong.status_code == 401 and "not a district board key" in wrong.text
    assert 'name="board_key"' in after.text and incident not in after.text
    assert stream.status_code == 401 and incident not in stream.text


async def test_a_forged_board_cookie_is_refused(app):
    await reported(app, "hamline", minutes_ago=1)
    async with client(app) as board:
        board.cookies.set("dooralert_board", "WyJrZXkiLCJ4IiwieSIsOTk5OTk5OTk5OV0.forged")
        page = await board.get("/board")
    assert 'name="board_key"' in page.text and "data-incident" not in page.text


async def test_a_new_report_reaches_an_open_board_stream(app):
    async with client(app) as board:
        await sign_in(board)
        stream = asyncio.create_task(board.get("/board/events"))
        await asyncio.sleep(0.3)
        incident = await reported(app, "lincoln-park", minutes_ago=0)
        answer = await stream
    assert answer.status_code == 200
    first, *later = answer.text.split("event: status")[1:]
    assert incident not in first
    assert any(incident in chunk for chunk in later)


class ExpiringTails(FakeEventLog):
    """A log whose board tail loses its place after its first read (its consumer expired
    while nobody watched), as a JetStream tail does after `inactive_threshold`."""

    def tail(self, subjects: Sequence[str], *, since: datetime) -> FakeTail:
        made = super().tail(subjects, since=since)
        reads = 0
        first = made.read_new

        async def read_new() -> list[StoredMessage]:
            nonlocal reads
            reads += 1
            if reads > 1:
                raise TailReset("consumer not found")
            return await first()

        made.read_new = read_new  # type: ignore[method-assign]  # a fake's fault injection
        return made


async def test_a_board_whose_tail_expired_is_rebuilt_at_once_not_shown_stale():
    settings = Settings(config_dir=EXAMPLES, secret_key=SecretStr("s" * 48))
    made = create_app(settings, directory=load_directory(EXAMPLES), event_log=ExpiringTails())
    async with made.router.lifespan_context(made), client(made) as board:
        await sign_in(board)
        first = await reported(made, "hamline", minutes_ago=3)
        assert listed(await board.get("/board")) == [first]
        second = await reported(made, "lincoln-park", minutes_ago=1)
        again = await board.get("/board")
    assert listed(again) == [second, first]
    assert "cannot be read" not in again.text


async def test_a_contacts_board_link_signs_them_in_and_a_bad_one_says_why(app):
    incident = await reported(app, "hamline", minutes_ago=1)
    keys = app.state.intake.keys
    now = int(time.time())
    good = link_token(keys, "safety-office", issued_at=now, expires_at=now + 600)
    old = link_token(keys, "safety-office", issued_at=now - 600, expires_at=now - 1)
    async with client(app) as board:
        expired = await board.get(f"/board?token={old}")
        forged = await board.get(f"/board?token={good[:-3]}abc")
        opened = await board.get(f"/board?token={good}")
        page = await board.get("/board")
    assert expired.status_code == 410 and "board link has expired" in expired.text
    assert forged.status_code == 401 and "not valid" in forged.text
    assert incident not in expired.text + forged.text
    assert opened.status_code == 303 and opened.headers["location"] == "/board"
    assert page.status_code == 200 and incident in page.text
