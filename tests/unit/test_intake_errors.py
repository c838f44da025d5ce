"""What the intake answers when something fails: the event log unreachable is a 503 saying
nothing was recorded and whom to call; a bug is a logged 500, never passed off as the log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.errors import NoRespondersError
from structlog.testing import capture_logs

from services.domain.directory import load_directory
from services.eventlog.interface import IncompleteRead
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES, HAMLINE_KEY, TEST_SECRET, report

AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}


@pytest.fixture
def log() -> FakeEventLog:
    return FakeEventLog()


@pytest.fixture
async def client(log: FakeEventLog) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(config_dir=EXAMPLES, secret_key=TEST_SECRET)
    app = create_app(settings, directory=load_directory(EXAMPLES), event_log=log)
    # The 500 handler answers, then Starlette re-raises to the server (which logs it): keep
    # the transport from raising so the test sees what a client sees.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as c,
    ):
        yield c


async def test_a_report_is_recorded_once_per_idempotency_key(
    client: httpx.AsyncClient, log: FakeEventLog
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    first = await client.post("/api/v1/encounters", json=report(), headers=headers)
    again = await client.post("/api/v1/encounters", json=report(), headers=headers)
    other = await client.post("/api/v1/encounters", json=report(agent_count=9), headers=headers)
    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 409)
    assert first.json()["incident_id"] == again.json()["incident_id"]
    assert (first.json()["created"], again.json()["created"]) == (True, False)
    assert len(log.messages) == 1


async def test_a_bug_is_a_logged_500_without_a_traceback_in_the_answer(
    client: httpx.AsyncClient, log: FakeEventLog
) -> None:
    log.fail_with = RuntimeError("boom: a bug, not the log")
    with capture_logs() as logs:
        resp = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error; nothing may have been recorded"}
    assert "unreachable" not in resp.text and "boom" not in resp.text
    assert "Traceback" not in resp.text and "RuntimeError" not in resp.text
    [logged] = [e for e in logs if e["event"] == "intake.unexpected_error"]
    assert logged["log_level"] == "error" and logged["exc_info"] is True
    assert logged["error"] == "RuntimeError"


async def test_a_bug_behind_the_staff_form_is_not_shown_as_the_log_unreachable(
    client: httpx.AsyncClient, log: FakeEventLog
) -> None:
    page = await client.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    await client.post(
        "/signin", data={"csrf_token": token, "school_id": "hamline", "intake_key": HAMLINE_KEY}
    )
    page = await client.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in report().items()}
    log.fail_with = KeyError("a bug")
    with capture_logs() as logs:
        resp = await client.post("/report", data={**form, "csrf_token": token})
    assert resp.status_code == 500 and "unreachable" not in resp.text
    assert any(e["event"] == "intake.unexpected_error" for e in logs)


@pytest.mark.parametrize("failure", [NoRespondersError(), TimeoutError(), IncompleteRead("cut")])
async def test_the_log_unreachable_is_a_503_saying_nothing_was_recorded(
    client: httpx.AsyncClient, log: FakeEventLog, failure: Exception
) -> None:
    log.fail_with = failure
    resp = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
    assert resp.status_code == 503
    phone = load_directory(EXAMPLES).district.emergency_phone
    assert resp.json()["error"] == (
        f"the event log is unreachable; nothing was recorded. Call the law department at {phone}"
    )
    assert log.messages == []


async def test_reading_an_incident_from_an_unreachable_log_is_a_503(
    client: httpx.AsyncClient, log: FakeEventLog
) -> None:
    created = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
    log.fail_with = IncompleteRead("2 message(s) not delivered")
    resp = await client.get(f"/api/v1/incidents/{created.json()['incident_id']}", headers=AUTH)
    assert resp.status_code == 503 and "nothing was recorded" in resp.text
