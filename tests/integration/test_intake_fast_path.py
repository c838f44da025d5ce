"""The report form's fast path and its no-JavaScript behaviour on a real nats-server: a door
alone sends an alert with safe defaults, the language switch keeps the entries and sends
nothing, errors read in plain words in both languages, notes count line breaks once."""

from __future__ import annotations

import re

import httpx

from schemas.events import EncounterReported, parse_event
from tests.integration.test_intake_web import csrf_of, encounters, sign_in, web

__all__ = ["web"]  # the fixture, shared with the access-control tests

SUBMISSION = re.compile(r'name="submission_id" value="([^"]+)"')


async def fresh_form(client: httpx.AsyncClient, lang: str = "en") -> dict[str, str]:
    """The hidden fields and defaults of a freshly loaded form, as a browser would send them."""
    page = (await client.get(f"/?lang={lang}")).text
    match = SUBMISSION.search(page)
    assert match
    values: dict[str, str] = {}
    for name in ("agency_stated", "document", "signed_by_judge", "purpose", "entry"):
        chosen = re.search(rf'<select id="{name}".*?<option value="([^"]+)" selected', page, re.S)
        assert chosen, name
        values[name] = chosen.group(1)
    checked = re.search(r'name="credentials_shown" value="(\w+)" checked', page)
    assert checked
    values["credentials_shown"] = checked.group(1)
    values.update(
        csrf_token=await csrf_of(client),
        submission_id=match.group(1),
        agent_count="1",
        location="",
        notes="",
    )
    return values


async def reported(js: object) -> list[EncounterReported]:
    events = [parse_event(msg.data) for msg in await encounters(js)]  # type: ignore[attr-defined]
    return [e for e in events if isinstance(e, EncounterReported)]


async def test_the_door_tile_alone_sends_an_alert_with_unknown_and_not_stated(web, js):
    await sign_in(web)
    page = await web.get("/")
    assert page.text.count('name="door"') == 5  # four doors of Hamline and "other"
    body = await fresh_form(web)
    resp = await web.post("/report", data={**body, "door": "Gym door"})
    assert resp.status_code == 303, resp.text
    [event] = await reported(js)
    report = event.data
    assert report.location == "Gym door"
    assert report.agency_stated == "unknown" and report.document == "unknown"
    assert report.purpose == "unspecified" and report.signed_by_judge == "unsure"
    assert report.entry == "kept_outside" and report.agent_count == 1
    assert report.credentials_shown is False


async def test_other_door_uses_the_text_typed(web, js):
    await sign_in(web)
    body = await fresh_form(web)
    resp = await web.post("/report", data={**body, "door": "_other", "location": "Boiler room"})
    assert resp.status_code == 303, resp.text
    [event] = await reported(js)
    assert event.data.location == "Boiler room"


async def test_language_switch_keeps_every_entry_and_sends_nothing(web, js):
    await sign_in(web)
    body = await fresh_form(web)
    typed = {"door": "_other", "location": "Puerta norte", "notes": "Dos agentes\r\nuna camioneta"}
    resp = await web.post("/report?lang=es", data={**body, **typed, "switch_lang": "es"})
    assert resp.status_code == 200
    assert '<html lang="es">' in resp.text and "Enviar alerta" in resp.text
    assert 'value="Puerta norte"' in resp.text and "Dos agentes" in resp.text
    assert 'value="_other" checked' in resp.text
    assert f'value="{body["submission_id"]}"' in resp.text  # the same report, not a new one
    assert await reported(js) == []
    again = await web.get("/")
    assert "Enviar alerta" in again.text  # the choice is remembered


async def test_errors_read_in_plain_words_in_both_languages_with_a_summary(web, js):
    await sign_in(web)
    body = await fresh_form(web)
    for lang, door, notes in (
        ("en", "Please enter the door", "Notes can be at most 500 characters"),
        ("es", "Escriba la puerta", "Las notas pueden tener como máximo 500 caracteres"),
    ):
        resp = await web.post(f"/report?lang={lang}", data={**body, "notes": "x" * 501})
        assert resp.status_code == 422
        assert door in resp.text and notes in resp.text
        assert "String should" not in resp.text and "Value error" not in resp.text
        summary = resp.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
        assert 'href="#door-0"' in summary and 'href="#notes"' in summary
        assert re.search(r'<details id="more"\s+open', resp.text)  # the notes are shown
    assert await reported(js) == []


async def test_notes_line_breaks_count_once_as_the_counter_does(web, js):
    await sign_in(web)
    body = await fresh_form(web)
    # 250 lines: 250 characters and 249 breaks, 499 as the counter counts; 748 as CRLF.
    notes = "\r\n".join(["x"] * 250)
    resp = await web.post("/report", data={**body, "door": "Back gate", "notes": notes})
    assert resp.status_code == 303, resp.text
    [event] = await reported(js)
    assert event.data.location == "Back gate" and event.data.notes_sealed is not None


async def test_web_app_manifest_is_served_and_allowed_by_the_csp(web, js):
    await sign_in(web)
    page = await web.get("/")
    assert '<link rel="manifest" href="/static/manifest.webmanifest">' in page.text
    assert "manifest-src 'self'" in page.headers["content-security-policy"]
    manifest = await web.get("/static/manifest.webmanifest")
    assert manifest.status_code == 200
    data = manifest.json()
    assert data["start_url"] == "/" and data["display"] == "standalone"
    for icon in data["icons"]:
        assert (await web.get(icon["src"])).status_code == 200
