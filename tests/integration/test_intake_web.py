"""The staff pages' access control on a real nats-server: sessions, CSRF, other schools, rate
limits, headers and languages. Every refusal records nothing."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from services.domain.directory import load_directory
from services.domain.tokens import Keyring
from services.eventlog import read_messages
from services.intake.app import create_app
from services.intake.security import SESSION_COOKIE, Session, encode_session
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY, report

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_of(**overrides: object) -> dict[str, str]:
    body = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in report().items()}
    body.pop("school_id")
    body.update({k: str(v) for k, v in overrides.items()})
    return body


async def csrf_of(client: httpx.AsyncClient, path: str = "/") -> str:
    page = await client.get(path)
    match = CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


async def sign_in(
    client: httpx.AsyncClient, key: str = HAMLINE_KEY, school: str = "hamline"
) -> str:
    token = await csrf_of(client)
    resp = await client.post(
        "/signin", data={"csrf_token": token, "school_id": school, "intake_key": key}
    )
    assert resp.status_code == 303, resp.text
    return await csrf_of(client)


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a new app, its lifespan running (connected to NATS as in production)."""
    app = create_app(settings, directory=load_directory(settings.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


@pytest.fixture
async def web(settings: Settings, js: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, directory=load_directory(EXAMPLES))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as client,
    ):
        yield client


async def encounters(js: object) -> list[object]:
    return await read_messages(js, "dooralert.>")  # type: ignore[arg-type]


async def test_form_asks_for_the_key_once_then_uses_a_signed_httponly_session(web, js):
    page = await web.get("/")
    assert 'name="intake_key"' in page.text and 'name="location"' not in page.text
    await sign_in(web)
    resp = await web.post("/signin", data={})  # the cookie jar now holds the session
    assert resp.status_code == 403
    page = await web.get("/")
    assert 'name="location"' in page.text and 'name="intake_key"' not in page.text
    assert "Hamline Elementary" in page.text


async def test_sign_in_cookie_is_httponly_samesite_strict_with_an_expiry(settings, js):
    async with app_client(settings) as client:
        token = await csrf_of(client)
        resp = await client.post(
            "/signin", data={"csrf_token": token, "school_id": "hamline", "intake_key": HAMLINE_KEY}
        )
    cookie = next(
        c for c in resp.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert f"Max-Age={int(settings.session_lifetime_seconds)}" in cookie


async def test_wrong_key_or_key_of_another_school_does_not_sign_in(web, js):
    token = await csrf_of(web)
    for school, key in (("hamline", "guess"), ("hamline", LINCOLN_KEY)):
        resp = await web.post(
            "/signin", data={"csrf_token": token, "school_id": school, "intake_key": key}
        )
        assert resp.status_code == 401 and "not recognised" in resp.text


async def test_report_needs_a_valid_csrf_token_and_records_nothing_without(web, js):
    token = await sign_in(web)
    missing = await web.post("/report", data=form_of(submission_id="a"))
    assert missing.status_code == 403 and "expired" in missing.text
    forged = await web.post(
        "/report", data=form_of(submission_id="b", csrf_token=token[:-4] + "AAAA")
    )
    assert forged.status_code == 403
    # A token signed for another session (another device) is refused too.
    async with httpx.AsyncClient(transport=web._transport, base_url="http://intake") as other:
        other_token = await sign_in(other)
    crossed = await web.post("/report", data=form_of(submission_id="c", csrf_token=other_token))
    assert crossed.status_code == 403
    cross_site = await web.post(
        "/report",
        data=form_of(submission_id="d", csrf_token=token),
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    assert await encounters(js) == []
    ok = await web.post("/report", data=form_of(submission_id="e", csrf_token=token))
    assert ok.status_code == 303
    assert len(await encounters(js)) == 1


async def test_expired_session_is_sent_to_sign_in_and_records_nothing(web, settings, js):
    token = await sign_in(web)
    sid_cookie = web.cookies.get(SESSION_COOKIE)
    assert sid_cookie
    # The same session, its expiry in the past (signed with the real key: only time changed).
    from services.intake.security import decode_session

    keys = Keyring.of(settings.signing_keys())
    session = decode_session(keys, sid_cookie, directory=load_directory(EXAMPLES))
    assert session is not None
    stale = Session(session.sid, session.school_id, session.key_id, int(time.time()) - 1)
    web.cookies.set(SESSION_COOKIE, encode_session(keys, stale))
    resp = await web.post("/report", data=form_of(submission_id="x", csrf_token=token))
    assert resp.status_code == 401 and "expired" in resp.text
    page = await web.get("/")
    assert 'name="intake_key"' in page.text and "expired" in page.text
    assert await encounters(js) == []


async def test_a_session_cannot_read_or_post_for_another_school(web, js):
    await sign_in(web, LINCOLN_KEY, "lincoln-park")
    created = await web.post(
        "/api/v1/encounters", json=report(), headers={"Authorization": f"Bearer {HAMLINE_KEY}"}
    )
    incident_id = created.json()["incident_id"]
    before = len(await encounters(js))
    token = await csrf_of(web)
    posted = await web.post(
        "/report", data=form_of(submission_id="y", csrf_token=token, school_id="hamline")
    )
    assert posted.status_code == 403
    read = await web.get(f"/incidents/{incident_id}")
    assert read.status_code == 403 and "Front entrance" not in read.text
    live = await web.get(f"/incidents/{incident_id}/events")
    assert live.status_code == 403
    follow = await web.post(
        f"/incidents/{incident_id}/followup", data={"csrf_token": token, "action": "resolve"}
    )
    assert follow.status_code == 403
    assert len(await encounters(js)) == before


async def test_follow_up_buttons_record_updates_for_own_school(web, js):
    token = await sign_in(web)
    resp = await web.post("/report", data=form_of(submission_id="f", csrf_token=token))
    page_url = resp.headers["location"].split("http://127.0.0.1:8080")[1]
    incident_id = page_url.split("/")[2].split("?")[0]
    page = await web.get(page_url)
    assert 'value="agents_left"' in page.text and 'value="document"' in page.text
    for action in (
        {"action": "agents_left"},
        {"action": "document", "document": "judicial_warrant", "signed_by_judge": "yes"},
        {"action": "resolve"},
    ):
        url = f"/incidents/{incident_id}/followup"
        if action["action"] in ("agents_left", "resolve"):
            # One press only asks: the page says what will happen and records nothing yet.
            asked = await web.post(url, data={"csrf_token": token, **action})
            assert asked.status_code == 200 and 'name="confirm" value="yes"' in asked.text
            action = {**action, "confirm": "yes"}
        done = await web.post(url, data={"csrf_token": token, **action})
        assert done.status_code == 303, done.text
    types = [m.subject.rsplit(".", 2)[-2:] for m in await encounters(js)]
    assert types == [
        ["encounter", "reported"],
        ["encounter", "updated"],
        ["encounter", "updated"],
        ["incident", "resolved"],
    ]
    page = await web.get(page_url)
    assert "All clear" in page.text and "Judicial warrant" in page.text


async def test_rate_limits_answer_429_with_a_clear_message_and_record_nothing(settings, js):
    tight = settings.model_copy(update={"rate_limit_school_per_minute": 2})
    app = create_app(tight, directory=load_directory(EXAMPLES))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as client,
    ):
        auth = {"Authorization": f"Bearer {HAMLINE_KEY}"}
        for _ in range(2):
            assert (
                await client.post("/api/v1/encounters", json=report(), headers=auth)
            ).status_code == 202
        over = await client.post("/api/v1/encounters", json=report(), headers=auth)
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert "too many requests" in over.json()["error"] and "555 0100" in over.json()["error"]
        token = await sign_in(client)
        page = await client.post("/report", data=form_of(submission_id="z", csrf_token=token))
        assert page.status_code == 429 and "Wait" in page.text and "555 0100" in page.text
        # Another school is not held back by this one's limit.
        other = await client.post(
            "/api/v1/encounters",
            json=report(school_id="lincoln-park"),
            headers={"Authorization": f"Bearer {LINCOLN_KEY}"},
        )
        assert other.status_code == 202
    assert len(await encounters(js)) == 3


async def test_sign_in_attempts_are_limited_per_client_address(settings, js):
    tight = settings.model_copy(update={"rate_limit_signin_per_minute": 3})
    async with app_client(tight) as client:
        token = await csrf_of(client)
        codes = [
            (
                await client.post(
                    "/signin",
                    data={"csrf_token": token, "school_id": "hamline", "intake_key": "guess"},
                )
            ).status_code
            for _ in range(4)
        ]
    assert codes == [401, 401, 401, 429]


async def test_html_pages_carry_security_headers_and_no_inline_script(web, js):
    await sign_in(web)
    for path in ("/", "/ack/garbage"):
        resp = await web.get(path)
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in resp.text and "<style>" not in resp.text
        assert 'style="' not in resp.text
    css = await web.get("/static/intake.css")
    assert css.status_code == 200 and css.headers["x-content-type-options"] == "nosniff"
    api = await web.get("/healthz")
    assert api.headers["x-content-type-options"] == "nosniff"


async def test_language_follows_accept_language_then_lang_parameter_then_cookie(web, js):
    await sign_in(web)
    es = await web.get("/", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert '<html lang="es">' in es.text and "Enviar alerta" in es.text
    assert "Orden judicial" in es.text  # choices and guidance in Spanish too
    en = await web.get("/?lang=en", headers={"Accept-Language": "es"})
    assert '<html lang="en">' in en.text and "Send alert" in en.text
    remembered = await web.get("/", headers={"Accept-Language": "es"})
    assert "Send alert" in remembered.text  # the cookie from ?lang=en wins


async def test_form_shows_every_documents_guidance_without_javascript(web, js):
    await sign_in(web)
    page = await web.get("/")
    assert page.text.count('class="doc" data-document=') == 7
    assert "does not allow entry" in page.text and "judge" in page.text
    assert "never share student information" in page.text


async def test_district_protocol_file_replaces_the_default_text(settings, js, tmp_path: Path):
    config = tmp_path / "config"
    config.mkdir()
    for name in ("district.yaml", "rules.yaml"):
        (config / name).write_text((EXAMPLES / name).read_text())
    (config / "protocol.yaml").write_text(
        "version: 1\ndocuments:\n  none:\n    en: Call the district counsel on the red phone.\n"
    )
    custom = settings.model_copy(update={"config_dir": config})
    async with app_client(custom) as client:
        await sign_in(client)
        page = await client.get("/")
    assert "red phone" in page.text
    assert "does not allow entry" in page.text  # other documents keep the built-in text
