"""Limits that stop abuse and never stop staff: failed sign-ins and wrong API keys, the
per-school report limit (with whom to call), strict types on the JSON API and bounded ids.

The intake app runs in-process on the in-memory event log: these are the intake's own
decisions, not the log's durability (tests/integration covers that on a real nats-server).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.domain.directory import Directory, load_directory
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY, report

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SUBMISSION = re.compile(r'name="submission_id" value="([^"]*)"')
PHONE = "+1 555 0100"  # deploy/examples/district.yaml


def settings_with(**overrides: Any) -> Settings:
    base = Settings(config_dir=EXAMPLES, secret_key=SecretStr("s" * 48), http_port=8080)
    return base.model_copy(update=overrides)


@dataclass
class App:
    """One intake app on the in-memory log; `client()` calls it from a given address."""

    app: FastAPI
    log: FakeEventLog

    def client(self, address: str = "10.0.0.1", **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://intake", headers=headers)


@pytest.fixture
async def intake() -> AsyncIterator[Callable[..., Awaitable[App]]]:
    """Make an intake app with the given settings (and directory), started for the test."""
    async with AsyncExitStack() as stack:

        async def make(*, directory: Directory | None = None, **options: Any) -> App:
            log = FakeEventLog()
            app = create_app(
                settings_with(**options),
                directory=directory or load_directory(EXAMPLES),
                event_log=log,
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            return App(app, log)

        yield make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def csrf_of(web: httpx.AsyncClient) -> str:
    page = await web.get("/")
    match = CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


async def try_sign_in(web: httpx.AsyncClient, key: str, school: str = "hamline") -> int:
    token = await csrf_of(web)
    resp = await web.post(
        "/signin", data={"csrf_token": token, "school_id": school, "intake_key": key}
    )
    return resp.status_code


def form_of(token: str, submission_id: str, **overrides: object) -> dict[str, str]:
    body = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in report().items()}
    body.pop("school_id")
    body.update({k: str(v) for k, v in overrides.items()})
    return {**body, "csrf_token": token, "submission_id": submission_id}


# --- sign-in and API keys ----------------------------------------------------------------------


async def test_a_correct_key_signs_in_after_others_behind_the_same_address_failed_many_times(
    intake,
):
    app = await intake(rate_limit_signin_per_minute=3)
    async with app.client() as guesser, app.client() as staff_member:  # the same school NAT address
        codes = [await try_sign_in(guesser, "guess") for _ in range(8)]
        assert codes == [401, 401, 401, 429, 429, 429, 429, 429]
        assert await try_sign_in(staff_member, HAMLINE_KEY) == 303
        page = await staff_member.get("/")
        assert 'name="location"' in page.text  # signed in: the report form


async def test_correct_sign_ins_never_count_towards_the_limit(intake):
    app = await intake(rate_limit_signin_per_minute=3)
    for _ in range(10):
        async with app.client() as device:
            assert await try_sign_in(device, HAMLINE_KEY) == 303


async def test_failed_sign_ins_for_one_school_do_not_limit_another_school_or_address(intake):
    app = await intake(rate_limit_signin_per_minute=3)
    async with app.client() as nat, app.client("10.9.9.9") as elsewhere:
        for _ in range(4):
            await try_sign_in(nat, "guess", school="hamline")
        assert await try_sign_in(nat, "guess", school="hamline") == 429
        assert await try_sign_in(nat, "guess", school="lincoln-park") == 401
        assert await try_sign_in(elsewhere, "guess", school="hamline") == 401


async def test_wrong_bearer_keys_are_limited_per_address_and_a_correct_key_still_works(intake):
    app = await intake(rate_limit_auth_failures_per_minute=3)
    async with app.client() as api, app.client("10.0.0.2") as other:
        codes = []
        for i in range(5):
            resp = await api.post(
                "/api/v1/encounters", json=report(), headers=bearer(f"dak_guess{i}")
            )
            codes.append(resp.status_code)
        assert codes == [401, 401, 401, 429, 429]
        assert int(resp.headers["retry-after"]) >= 1
        assert "too many wrong intake keys" in resp.json()["error"]
        read = await api.get("/api/v1/incidents/x", headers=bearer("dak_wrong"))
        assert read.status_code == 429
        # Staff behind the same address, with the right key, are not held back.
        ok = await api.post("/api/v1/encounters", json=report(), headers=bearer(HAMLINE_KEY))
        assert ok.status_code == 202, ok.text
        # Another address is not limited by this one.
        wrong = await other.post("/api/v1/encounters", json=report(), headers=bearer("nope"))
        assert wrong.status_code == 401
    assert len(app.log.events()) == 1


# --- the per-school report limit ---------------------------------------------------------------


async def test_the_11th_report_in_a_minute_gets_429_with_the_emergency_phone(intake):
    app = await intake()
    async with app.client() as api:
        for i in range(10):
            resp = await api.post(
                "/api/v1/encounters",
                json=report(),
                headers={**bearer(HAMLINE_KEY), "Idempotency-Key": f"door-{i}"},
            )
            assert resp.status_code == 202, (i, resp.text)
        over = await api.post(
            "/api/v1/encounters",
            json=report(),
            headers={**bearer(HAMLINE_KEY), "Accept-Language": "es"},
        )
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        body = over.json()
        assert body["emergency_phone"] == PHONE
        assert "nothing was recorded" in body["error"]
        assert f"llame al {PHONE}" in body["advice"] and "10 reportes" in body["advice"]
        # Another school has its own limit.
        lincoln = await api.post(
            "/api/v1/encounters", json=report(school_id="lincoln-park"), headers=bearer(LINCOLN_KEY)
        )
        assert lincoln.status_code == 202
    assert len(app.log.events()) == 11


async def test_retrying_a_recorded_report_never_counts_against_the_limit(intake):
    app = await intake(rate_limit_reports_per_minute=3)
    async with app.client() as api:
        headers = {**bearer(HAMLINE_KEY), "Idempotency-Key": "door-a"}
        first = await api.post("/api/v1/encounters", json=report(), headers=headers)
        retries = [
            await api.post("/api/v1/encounters", json=report(), headers=headers) for _ in range(6)
        ]
        assert first.json()["created"] is True
        assert {(r.status_code, r.json()["created"]) for r in retries} == {(202, False)}
        for key in ("door-b", "door-c"):
            resp = await api.post(
                "/api/v1/encounters",
                json=report(),
                headers={**bearer(HAMLINE_KEY), "Idempotency-Key": key},
            )
            assert resp.status_code == 202
        over = await api.post("/api/v1/encounters", json=report(), headers=bearer(HAMLINE_KEY))
        assert over.status_code == 429
        # Even at the limit, a retry of a recorded report answers with its incident.
        again = await api.post("/api/v1/encounters", json=report(), headers=headers)
        assert (
            again.status_code == 202 and again.json()["incident_id"] == first.json()["incident_id"]
        )
    assert len(app.log.events()) == 3


async def test_the_report_form_at_the_limit_says_when_to_retry_and_whom_to_call_in_spanish(intake):
    app = await intake(rate_limit_reports_per_minute=1)
    async with app.client(**{"Accept-Language": "es"}) as web:
        assert await try_sign_in(web, HAMLINE_KEY) == 303
        token = await csrf_of(web)
        first = await web.post("/report", data=form_of(token, "sub-1"))
        assert first.status_code == 303, first.text
        second = await web.post("/report", data=form_of(token, "sub-2", location="Side gate"))
        assert second.status_code == 429
        assert int(second.headers["retry-after"]) >= 1
        assert "Espere" in second.text and f"llame al {PHONE}" in second.text
        # The form keeps what was typed and its submission id, to send it again later.
        assert 'value="Side gate"' in second.text and 'value="sub-2"' in second.text
        # Sending the first report again is a retry, not a new report: not refused.
        retry = await web.post("/report", data=form_of(token, "sub-1"))
        assert retry.status_code == 303
    assert len(app.log.events()) == 1


def without_phone() -> Directory:
    directory = load_directory(EXAMPLES)
    district = directory.district.model_copy(update={"emergency_phone": None})
    return directory.model_copy(update={"district": district})


async def test_without_an_emergency_phone_the_limit_says_call_the_district_safety_office(intake):
    app = await intake(rate_limit_reports_per_minute=1, directory=without_phone())
    async with app.client() as api:
        await api.post("/api/v1/encounters", json=report(), headers=bearer(HAMLINE_KEY))
        over = await api.post("/api/v1/encounters", json=report(), headers=bearer(HAMLINE_KEY))
    assert over.status_code == 429
    assert over.json()["emergency_phone"] is None
    assert "call the district safety office" in over.json()["advice"]


# --- strict types and bounded ids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("agent_count", "5", "valid integer"),
        ("agent_count", True, "valid integer"),
        ("agent_count", 5.0, "valid integer"),
        ("credentials_shown", "yes", "valid boolean"),
        ("credentials_shown", "true", "valid boolean"),
        ("credentials_shown", 1, "valid boolean"),
    ],
)
async def test_json_api_refuses_strings_and_numbers_for_typed_fields(intake, field, value, reason):
    app = await intake()
    async with app.client() as api:
        resp = await api.post(
            "/api/v1/encounters", json=report(**{field: value}), headers=bearer(HAMLINE_KEY)
        )
    assert resp.status_code == 422
    assert [f["field"] for f in resp.json()["fields"]] == [field]
    assert reason in resp.json()["fields"][0]["reason"]
    assert app.log.events() == []


async def test_an_update_with_a_string_agent_count_is_refused(intake):
    app = await intake()
    async with app.client() as api:
        made = await api.post("/api/v1/encounters", json=report(), headers=bearer(HAMLINE_KEY))
        incident_id = made.json()["incident_id"]
        resp = await api.post(
            f"/api/v1/incidents/{incident_id}/updates",
            json={"agent_count": "3"},
            headers=bearer(HAMLINE_KEY),
        )
    assert resp.status_code == 422, resp.text
    assert "agent_count" in resp.text
    assert len(app.log.events()) == 1


@pytest.mark.parametrize("key", ["k" * 201, "line\nbreak", ""])
async def test_an_unbounded_idempotency_key_is_refused(intake, key):
    app = await intake()
    async with app.client() as api:
        resp = await api.post(
            "/api/v1/encounters",
            json=report(),
            headers={**bearer(HAMLINE_KEY), "Idempotency-Key": key},
        )
    assert resp.status_code == 422
    assert resp.json()["fields"][0]["field"] == "Idempotency-Key"
    assert app.log.events() == []


@pytest.mark.parametrize("submission_id", ["s" * 500, "a b", "x" * 65, "ñ"])
async def test_a_tampered_submission_id_is_refused_and_the_form_offers_a_fresh_one(
    intake, submission_id
):
    app = await intake()
    async with app.client() as web:
        assert await try_sign_in(web, HAMLINE_KEY) == 303
        token = await csrf_of(web)
        resp = await web.post("/report", data=form_of(token, submission_id, location="Gym"))
        assert resp.status_code == 400
        assert "submission id is not valid" in resp.text and 'value="Gym"' in resp.text
        fresh = SUBMISSION.search(resp.text)
        assert fresh and uuid.UUID(fresh.group(1))
        ok = await web.post("/report", data=form_of(token, fresh.group(1), location="Gym"))
        assert ok.status_code == 303
    assert len(app.log.events()) == 1


async def test_the_report_form_still_converts_its_count_and_yes_no_answers(intake):
    app = await intake()
    async with app.client() as web:
        assert await try_sign_in(web, HAMLINE_KEY) == 303
        token = await csrf_of(web)
        resp = await web.post(
            "/report", data=form_of(token, "f-1", agent_count="4", credentials_shown="false")
        )
        assert resp.status_code == 303, resp.text
        bad = await web.post("/report", data=form_of(token, "f-2", agent_count="four"))
        assert bad.status_code == 422 and "Enter how many agents, from 1 to 50" in bad.text
    [event] = app.log.events()
    assert event.data.agent_count == 4 and event.data.credentials_shown is False


async def test_addresses_of_one_ipv6_64_network_share_one_limit(intake):
    app = await intake(rate_limit_auth_failures_per_minute=2)
    codes = []
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"):  # one host's /64
        async with app.client(host) as api:
            resp = await api.post("/api/v1/encounters", json=report(), headers=bearer("nope"))
            codes.append(resp.status_code)
    assert codes == [401, 401, 429]
    async with app.client("2001:db8:0:1::1") as neighbour:  # another /64
        resp = await neighbour.post("/api/v1/encounters", json=report(), headers=bearer("nope"))
        assert resp.status_code == 401
