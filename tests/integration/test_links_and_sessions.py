"""Links people can forward safely, and secrets that fail closed, on a real nats-server: each
recipient's status link expires and can be revoked, links sent to shared places show no notes,
keys rotate, a token works only for its purpose, and signing out ends the session everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from services.cli.links import _revoke
from services.domain.directory import load_directory
from services.domain.tokens import AckClaim, Keyring, ViewClaim, ack_token, view_token
from services.intake.app import create_app
from services.intake.security import SESSION_COOKIE
from services.notifier.plan import (
    AppriseDelivery,
    EmailDelivery,
    Found,
    PlanSettings,
    WebhookDelivery,
    plan_delivery,
)
from services.runtime.settings import InsecureSecretKey, Settings
from tests.fixtures.notifier_support import request, test_directory
from tests.support import EXAMPLES, HAMLINE_KEY, REPO, TEST_KEYS, TEST_SECRET, report

NOTES = "Two agents asked for the office manager by name."
OLD = "last-months-secret-key-0123456789-abcdefghijk"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@asynccontextmanager
async def intake(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An intake app with its lifespan (NATS, the sessions bucket) and a client of it."""
    app = create_app(settings, directory=load_directory(EXAMPLES))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as client,
    ):
        yield client


@pytest.fixture
async def client(settings: Settings, js: object) -> AsyncIterator[httpx.AsyncClient]:
    async with intake(settings) as c:
        yield c


async def reported(client: httpx.AsyncClient, **overrides: object) -> str:
    resp = await client.post(
        "/api/v1/encounters",
        json=report(**overrides),
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["incident_id"])


def link(incident_id: str, recipient: str = "law-dept", *, notes: bool = True, **t: int) -> str:
    now = int(time.time())
    claim = ViewClaim(
        incident_id,
        recipient,
        "n-1",
        notes,
        t.get("issued_at", now),
        t.get("expires_at", now + 3600),
    )
    return view_token(TEST_KEYS, claim)


async def as_json(client: httpx.AsyncClient, incident_id: str, token: str) -> httpx.Response:
    return await client.get(f"/api/v1/incidents/{incident_id}", params={"token": token})


# --- secrets that fail closed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "no secret key"),
        ({"DOORALERT_SECRET_KEY": "dev-only-insecure-secret-change-me"}, "published example"),
        ({"DOORALERT_SECRET_KEYS": "short-key-of-31-bytes-012345678"}, "31 bytes"),
        ({"DOORALERT_SECRET_KEYS": f"{TEST_SECRET},tooshort"}, "key 2 of"),
    ],
)
def test_intake_refuses_to_start_without_a_real_key_and_says_how_to_make_one(
    env: dict[str, str], words: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOORALERT_SECRET")}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "intake"],
        env={**clean, **env, "DOORALERT_CONFIG_DIR": str(EXAMPLES), "DOORALERT_HTTP_PORT": "1"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "refusing to start" in proc.stderr and words in proc.stderr
    assert "dooralert keys secret" in proc.stderr and "token_urlsafe(48)" in proc.stderr


def test_the_app_cannot_even_be_built_with_an_example_key() -> None:
    weak = Settings(config_dir=EXAMPLES, secret_key=SecretStr("test-secret"))
    with pytest.raises(InsecureSecretKey):
        create_app(weak, directory=load_directory(EXAMPLES))


def test_keys_secret_prints_a_key_the_services_accept() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "keys", "secret"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = proc.stdout.strip()
    assert Settings(secret_keys=[SecretStr(key)]).signing_keys() == (key,)


# --- rotation and purposes ------------------------------------------------------------------


async def test_after_rotation_old_links_work_until_their_key_is_removed(
    settings: Settings, js: object
) -> None:
    async with intake(settings) as c:
        incident = await reported(c)
    now = int(time.time())
    claim = ViewClaim(incident, "law-dept", "n-1", True, now, now + 3600)
    signed_with_old = view_token(Keyring.of([OLD]), claim)
    rotated = settings.model_copy(update={"secret_keys": [SecretStr(TEST_SECRET), SecretStr(OLD)]})
    async with intake(rotated) as c:
        assert (await as_json(c, incident, signed_with_old)).status_code == 200
    removed = settings.model_copy(update={"secret_keys": [SecretStr(TEST_SECRET)]})
    async with intake(removed) as c:
        resp = await as_json(c, incident, signed_with_old)
        assert resp.status_code == 401 and "not issued by this district" in resp.json()["error"]


async def test_a_token_for_one_purpose_is_refused_for_another(client: httpx.AsyncClient) -> None:
    incident = await reported(client)
    ack = ack_token(TEST_KEYS, AckClaim(incident, "hamline", "law", "law-dept", "n", 2**40))
    assert (await as_json(client, incident, ack)).status_code == 401
    page = await client.get(f"/incidents/{incident}", params={"token": ack})
    assert page.status_code == 401 and "not valid" in page.text
    # A status link is no acknowledgement link, and a session cookie neither.
    resp = await client.post(f"/api/v1/incidents/{incident}/ack", json={"token": link(incident)})
    assert resp.status_code == 400
    session = TEST_KEYS.sign("session", ["sid", "hamline", "kid", 2**40])
    assert (await as_json(client, incident, session)).status_code == 401


# --- status links -------------------------------------------------------------------------


async def test_a_status_link_works_for_its_incident_until_it_expires(
    client: httpx.AsyncClient,
) -> None:
    incident = await reported(client)
    assert (await as_json(client, incident, link(incident))).status_code == 200
    past = int(time.time()) - 1
    expired = link(incident, issued_at=past - 7 * 86400, expires_at=past)
    resp = await as_json(client, incident, expired)
    assert resp.status_code == 410 and "expired" in resp.json()["error"]
    page = await client.get(f"/incidents/{incident}", params={"token": expired})
    assert page.status_code == 410 and "This status link has expired" in page.text


async def test_a_revoked_link_stops_working_and_says_so(
    client: httpx.AsyncClient, js: object
) -> None:
    incident = await reported(client)
    law, safety = link(incident, "law-dept"), link(incident, "safety-office")
    assert (await as_json(client, incident, law)).status_code == 200
    await asyncio.sleep(1.01)  # issued strictly before the revocation (whole seconds)
    said = await _revoke(js, incident, "law-dept")  # type: ignore[arg-type]
    assert "law-dept's status links" in said
    resp = await as_json(client, incident, law)
    assert resp.status_code == 410 and "revoked" in resp.json()["error"]
    page = await client.get(f"/incidents/{incident}", params={"token": law})
    assert page.status_code == 410 and "withdrawn by the district" in page.text
    events = await client.get(f"/incidents/{incident}/events", params={"token": law})
    assert events.status_code == 410
    # Only law-dept's: others still work, and a link issued after the revocation works.
    assert (await as_json(client, incident, safety)).status_code == 200
    await asyncio.sleep(1.01)
    assert (await as_json(client, incident, link(incident, "law-dept"))).status_code == 200
    await _revoke(js, incident, None)  # type: ignore[arg-type]
    assert (await as_json(client, incident, safety)).status_code == 410


async def test_chat_and_webhook_links_show_no_notes_while_the_email_link_does(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    incident = await reported(client, notes=NOTES)
    update = await client.post(
        f"/api/v1/incidents/{incident}/updates",
        json={"notes": "A second car arrived."},
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
    )
    assert update.status_code == 202, update.text
    directory = test_directory(tmp_path, "http://hooks.example")
    plan = PlanSettings.from_settings(settings)
    stored = await client.get(
        f"/api/v1/incidents/{incident}", headers={"Authorization": f"Bearer {HAMLINE_KEY}"}
    )
    # The update's notes replace the report's; staff see them.
    assert stored.json()["report"]["notes"] == "A second car arrived."

    def status_link(contact: str, channel: str, role: str) -> str:
        from tests.fixtures.notifier_support import encounter

        req = request(incident, contact, role=role, channel=channel)  # type: ignore[arg-type]
        found = Found(report=encounter(incident, notes=NOTES))
        delivery = plan_delivery(
            req, found, directory=directory, settings=plan, now=datetime.now(UTC)
        )
        if isinstance(delivery, EmailDelivery):
            body = delivery.message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
        elif isinstance(delivery, WebhookDelivery):
            text = json.dumps(dict(delivery.payload))
        else:
            assert isinstance(delivery, AppriseDelivery)
            text = delivery.body
        return str(re.search(r"token=([A-Za-z0-9_.-]+)", text).group(1))  # type: ignore[union-attr]

    email = status_link("law-dept", "email", "law")
    for token in (email,):
        seen = (await as_json(client, incident, token)).json()
        assert seen["report"]["notes"] == "A second car arrived."
        assert "A second car arrived." in json.dumps(seen["updates"])
    for token in (
        status_link("hook-only", "webhook", "safety"),
        status_link("chat-room", "apprise", "leadership"),
    ):
        seen = (await as_json(client, incident, token)).json()
        assert seen["report"]["notes"] is None
        assert "second car" not in json.dumps(seen) and NOTES not in json.dumps(seen)
        page = await client.get(f"/incidents/{incident}", params={"token": token})
        assert page.status_code == 200 and "second car" not in page.text
    page = await client.get(f"/incidents/{incident}", params={"token": email})
    assert "A second car arrived." in page.text


# --- signing out ------------------------------------------------------------------------------


async def sign_in(client: httpx.AsyncClient) -> str:
    token = CSRF.search((await client.get("/")).text)
    assert token
    resp = await client.post(
        "/signin",
        data={"csrf_token": token.group(1), "school_id": "hamline", "intake_key": HAMLINE_KEY},
    )
    assert resp.status_code == 303, resp.text
    page = await client.get("/")
    found = CSRF.search(page.text)
    assert found and 'name="intake_key"' not in page.text
    return found.group(1)


async def test_a_signed_out_cookie_no_longer_works_on_any_intake(
    settings: Settings, js: object
) -> None:
    async with intake(settings) as one, intake(settings) as two:
        csrf = await sign_in(one)
        cookie = one.cookies.get(SESSION_COOKIE)
        two.cookies.set(SESSION_COOKIE, str(cookie))  # the same cookie, copied elsewhere
        assert 'name="intake_key"' not in (await two.get("/")).text
        out = await one.post("/signout", data={"csrf_token": csrf})
        assert out.status_code == 303
        one.cookies.set(SESSION_COOKIE, str(cookie))  # kept by the browser, or stolen
        for client in (one, two):
            page = await client.get("/")
            assert page.status_code == 200 and 'name="intake_key"' in page.text
        refused = await two.post("/report", data={"csrf_token": csrf, "location": "Front"})
        assert refused.status_code in (401, 403)
        assert 'name="intake_key"' in refused.text or "expired" in refused.text
        # Signing in again on the same device works.
        one.cookies.clear()
        await sign_in(one)
