"""The report API's hot path (issue 13): POST /api/v1/encounters is called without FastAPI's
dependency solving (api.DirectRoute), its answer's links are made while the append awaits its
acknowledgement, and its log line is written after the answer. None of it changes what is
answered: the key is checked, the body validated, and 202 only for a report stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.errors import NoRespondersError
from structlog.testing import capture_logs

from schemas.events import Event
from services.domain.directory import load_directory
from services.eventlog.interface import Appended
from services.intake.app import create_app
from services.intake.deps import Intake
from services.intake.incidents import log_after_answer, while_acknowledged
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY, TEST_SECRET, report

AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}


class SlowLog(FakeEventLog):
    """The in-memory log whose appends are acknowledged a few milliseconds later, as a
    JetStream PubAck is; `failing` fails them after that wait instead."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: Exception | None = None
        self.during: list[str] = []  # what had happened while an append was awaited

    async def append(self, event: Event) -> Appended:
        await asyncio.sleep(0.01)
        self.during.append(event.incident_id)
        if self.failing is not None:
            raise self.failing
        return await super().append(event)


class UnreachableSessions:
    """A signed-out sessions record that cannot be read (its bucket's server gone)."""

    async def end(self, sid: str, *, expires_at: int) -> None:
        raise NoRespondersError

    async def is_ended(self, sid: str) -> bool:
        raise NoRespondersError


def client_of(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://intake")


@pytest.fixture
def log() -> SlowLog:
    return SlowLog()


@pytest.fixture
async def client(log: SlowLog) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(config_dir=EXAMPLES, secret_key=TEST_SECRET)
    app = create_app(settings, directory=load_directory(EXAMPLES), event_log=log)
    async with app.router.lifespan_context(app), client_of(app) as c:
        yield c


def test_the_report_api_keeps_its_openapi_declaration() -> None:
    settings = Settings(config_dir=EXAMPLES, secret_key=TEST_SECRET)
    app = create_app(settings, directory=load_directory(EXAMPLES), event_log=FakeEventLog())
    post = app.openapi()["paths"]["/api/v1/encounters"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert post["requestBody"]["required"] is True
    assert {"agency_stated", "location", "notes"} <= set(schema["properties"])
    assert "202" in post["responses"]


async def test_keys_are_still_checked(client: httpx.AsyncClient, log: SlowLog) -> None:
    missing = await client.post("/api/v1/encounters", json=report())
    wrong = await client.post(
        "/api/v1/encounters", json=report(), headers={"Authorization": "Bearer nope"}
    )
    other = await client.post(
        "/api/v1/encounters",
        json=report(),
        headers={"Authorization": f"Bearer {LINCOLN_KEY}"},
    )
    assert (missing.status_code, wrong.status_code, other.status_code) == (401, 401, 403)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert log.messages == []


async def test_an_invalid_report_is_still_a_422_naming_the_field(
    client: httpx.AsyncClient, log: SlowLog
) -> None:
    resp = await client.post("/api/v1/encounters", json=report(agent_count="2"), headers=AUTH)
    assert resp.status_code == 422
    assert [f["field"] for f in resp.json()["fields"]] == ["agent_count"]
    assert log.messages == []


async def test_a_report_by_key_does_not_wait_on_the_session_record() -> None:
    """The API report solves no dependencies, so not the app-wide signed-out check either:
    a session cookie it carries (a browser's, sent along) is not looked up, and a session
    record that cannot be read fails the staff pages (503), never a report by key."""
    settings = Settings(config_dir=EXAMPLES, secret_key=TEST_SECRET)
    app = create_app(
        settings,
        directory=load_directory(EXAMPLES),
        event_log=FakeEventLog(),
        ended_sessions=UnreachableSessions(),
    )
    async with app.router.lifespan_context(app), client_of(app) as web:
        page = await web.get("/")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signin = await web.post(
            "/signin",
            data={"csrf_token": token, "school_id": "hamline", "intake_key": HAMLINE_KEY},
        )
        assert signin.status_code in (200, 303) and web.cookies, signin.text
        assert (await web.get("/")).status_code == 503  # the pages do look it up
        resp = await web.post("/api/v1/encounters", json=report(), headers=AUTH)
    assert resp.status_code == 202, resp.text


async def test_the_answer_links_are_made_while_the_append_is_awaited(
    client: httpx.AsyncClient, log: SlowLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[str, int]] = []
    urls = Intake.urls

    def spy(self: Intake, incident_id: str, *, actor: str) -> dict[str, str]:
        made.append((incident_id, len(log.during)))
        return urls(self, incident_id, actor=actor)

    monkeypatch.setattr(Intake, "urls", spy)
    resp = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
    assert resp.status_code == 202
    incident = resp.json()["incident_id"]
    # Once, for this incident, before its append had returned; the answer carries them.
    assert made == [(incident, 0)] and log.during == [incident]
    assert f"/api/v1/incidents/{incident}?token=" in resp.json()["status_url"]
    status = await client.get(resp.json()["status_url"].removeprefix("http://localhost:8080"))
    assert status.status_code == 200 and status.json()["incident_id"] == incident


async def test_links_made_for_a_report_not_stored_are_never_answered(
    client: httpx.AsyncClient, log: SlowLog
) -> None:
    log.failing = NoRespondersError()
    resp = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
    assert resp.status_code == 503
    assert "nothing was recorded" in resp.json()["error"]
    assert "status_url" not in resp.text and "incident_id" not in resp.text
    assert log.messages == [] and len(log.during) == 1


async def test_a_log_that_answers_at_once_still_gets_the_links(monkeypatch: Any) -> None:
    settings = Settings(config_dir=EXAMPLES, secret_key=TEST_SECRET)
    app = create_app(settings, directory=load_directory(EXAMPLES), event_log=FakeEventLog())
    async with app.router.lifespan_context(app), client_of(app) as web:
        resp = await web.post("/api/v1/encounters", json=report(), headers=AUTH)
    assert resp.status_code == 202
    assert resp.json()["incident_id"] in resp.json()["page_url"]


async def test_the_reported_line_is_logged_once_the_answer_is_given(
    client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        resp = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
        await asyncio.sleep(0)
    [line] = [e for e in logs if e["event"] == "encounter.reported"]
    assert line["incident"] == resp.json()["incident_id"] and line["school"] == "hamline"
    assert line["duplicate"] is False and line["log_level"] == "info"


async def test_log_after_answer_logs_when_the_task_gives_the_loop_back() -> None:
    with capture_logs() as logs:
        log_after_answer("encounter.reported", incident="i-1")
        assert logs == []  # the answer is written in this same turn
        await asyncio.sleep(0)
    assert [e["event"] for e in logs] == ["encounter.reported"]


def test_log_after_answer_outside_a_loop_logs_at_once() -> None:
    with capture_logs() as logs:
        log_after_answer("encounter.reported", incident="i-1")
    assert [(e["event"], e["incident"]) for e in logs] == [("encounter.reported", "i-1")]


async def test_while_acknowledged_runs_the_work_two_turns_later() -> None:
    ran: list[str] = []
    while_acknowledged(ran.append, "i-1")
    assert ran == []
    await asyncio.sleep(0)
    assert ran == []  # the turn the append's publish is flushed in
    await asyncio.sleep(0)
    assert ran == ["i-1"]


def test_while_acknowledged_outside_a_loop_runs_nothing() -> None:
    ran: list[str] = []
    while_acknowledged(ran.append, "i-1")
    assert ran == []
