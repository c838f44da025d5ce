"""A report sent after the session has gone is kept, on a real nats-server: the sign-in page
carries it (hidden fields, nothing stored), the key sends it once, a wrong key keeps it, and
a forging site gets nothing. The browser version is tests/e2e/test_nothing_lost.py."""

from __future__ import annotations

import html
import re
import time

import httpx

from schemas.events import EncounterReported, parse_event
from services.domain.directory import load_directory
from services.domain.tokens import Keyring
from services.intake.security import SESSION_COOKIE, Session, decode_session, encode_session
from tests.integration.test_intake_fast_path import fresh_form
from tests.integration.test_intake_web import encounters, sign_in, web
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY

__all__ = ["web"]

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
TYPED = {
    "door": "_other",
    "location": "Loading dock",
    "agency_stated": "cbp",
    "agent_count": "3",
    "credentials_shown": "true",
    "document": "judicial_warrant",
    "signed_by_judge": "yes",
    "purpose": "parent",
    "entry": "kept_outside",
    "notes": "Two agents\r\na grey van <b>",
}


def hidden(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in HIDDEN.findall(page)}


async def reported(js: object) -> list[EncounterReported]:
    events = [parse_event(m.data) for m in await encounters(js)]  # type: ignore[attr-defined]
    return [e for e in events if isinstance(e, EncounterReported)]


async def filled_then_signed_out(web: httpx.AsyncClient) -> dict[str, str]:
    """A form filled while signed in, whose cookies are then cleared."""
    await sign_in(web)
    form = {**await fresh_form(web), **TYPED}
    web.cookies.clear()
    return form


async def test_cleared_cookies_show_the_key_page_with_the_report_then_send_it_once(web, js):
    form = await filled_then_signed_out(web)
    kept = await web.post("/report", data=form)
    assert kept.status_code == 403 and 'name="intake_key"' in kept.text
    assert "Nothing you typed is lost" in kept.text
    assert "Loading dock" in kept.text and "Judicial warrant" in kept.text  # listed
    carried = hidden(kept.text)
    assert {k: carried[f"report.{k}"] for k in TYPED} == TYPED
    assert carried["report.submission_id"] == form["submission_id"]
    assert "report.csrf_token" not in carried  # only the report's own fields ride along
    assert await reported(js) == []
    signin = {**carried, "school_id": "hamline"}
    # A wrong key: refused, and the report is still on the page.
    wrong = await web.post("/signin?lang=en", data={**signin, "intake_key": LINCOLN_KEY})
    assert wrong.status_code == 401 and "not recognised" in wrong.text
    # (A plain sign-in's wrong key: its language link opens the form, not the POST address.)
    token = {"csrf_token": hidden(wrong.text)["csrf_token"], "school_id": "hamline"}
    plain = await web.post("/signin", data={**token, "intake_key": "x"})
    assert plain.status_code == 401 and 'href="/?lang=es"' in plain.text
    again = hidden(wrong.text)
    assert {k: again[f"report.{k}"] for k in TYPED} == TYPED
    assert await reported(js) == []
    # The right key: signed in and the report sent, as typed.
    signin = {**again, "school_id": "hamline", "intake_key": HAMLINE_KEY}
    before = httpx.Cookies(web.cookies)  # the signed-out page's cookies, as a double click has
    sent = await web.post("/signin?lang=en", data=signin)
    assert sent.status_code == 303, sent.text
    assert "/incidents/" in sent.headers["location"]
    [event] = await reported(js)
    r = event.data
    assert (r.location, r.agency_stated, r.agent_count) == ("Loading dock", "cbp", 3)
    assert (r.credentials_shown, r.document, r.signed_by_judge) == (True, "judicial_warrant", "yes")
    assert (r.purpose, r.entry) == ("parent", "kept_outside")
    assert r.notes is None and r.notes_sealed is not None  # sealed, never in clear
    # The browser is signed in now: the incident page and the form open.
    page = await web.get("/")
    assert 'name="location"' in page.text and 'name="intake_key"' not in page.text
    # Pressing the button twice sends the same page twice, with the same cookies: one report.
    async with httpx.AsyncClient(
        transport=web._transport, base_url="http://intake", cookies=before
    ) as double:
        twice = await double.post("/signin?lang=en", data=signin)
    assert twice.status_code == 303
    # The same incident's page (its link's token is signed anew, so it differs once a second
    # boundary falls between the two answers).
    assert twice.headers["location"].split("?")[0] == sent.headers["location"].split("?")[0]
    # Sent again later (the back button), the page's token is stale: the key page again.
    stale = await web.post("/signin?lang=en", data=signin)
    assert stale.status_code == 403 and "report.location" in stale.text
    assert len(await reported(js)) == 1


async def test_an_expired_session_keeps_the_report_in_the_page_language(web, settings, js):
    await sign_in(web)
    form = {**await fresh_form(web, lang="es"), **TYPED}
    keys = Keyring.of(settings.signing_keys())
    session = decode_session(
        keys, web.cookies.get(SESSION_COOKIE), directory=load_directory(EXAMPLES)
    )
    assert session is not None
    stale = Session(session.sid, session.school_id, session.key_id, int(time.time()) - 1)
    # Replaced where the server put it (a second cookie of the same name would shadow).
    domain = next(c.domain for c in web.cookies.jar if c.name == SESSION_COOKIE)
    web.cookies.set(SESSION_COOKIE, encode_session(keys, stale), domain=domain)
    web.cookies.delete("dooralert_lang")
    kept = await web.post("/report?lang=es", data=form)  # the form's action names its language
    assert kept.status_code == 401
    assert 'lang="es"' in kept.text and "No se perdió nada" in kept.text
    assert 'action="/signin?lang=es"' in kept.text
    # The school of the expired session is chosen already: only the key is left to type.
    assert '<option value="hamline" selected>' in kept.text
    signin = {**hidden(kept.text), "school_id": "hamline", "intake_key": HAMLINE_KEY}
    sent = await web.post("/signin?lang=es", data=signin)
    assert sent.status_code == 303, sent.text
    [event] = await reported(js)
    assert event.data.location == "Loading dock" and event.data.purpose == "parent"


async def test_the_language_button_while_signed_out_keeps_the_entries_and_sends_nothing(web, js):
    form = await filled_then_signed_out(web)
    kept = await web.post("/report?lang=es", data={**form, "switch_lang": "es"})
    assert kept.status_code == 403 and "Sus datos se conservan" in kept.text
    signin = {**hidden(kept.text), "school_id": "hamline", "intake_key": HAMLINE_KEY}
    back = await web.post("/signin?lang=es", data=signin)
    assert back.status_code == 200 and 'lang="es"' in back.text
    assert 'value="Loading dock"' in back.text and "Two agents\r\na grey van &lt;b&gt;" in back.text
    assert await reported(js) == []
    # The form that came back is signed in: Send sends it.
    values = {**form, **hidden(back.text)}
    values.pop("switch_lang", None)
    sent = await web.post("/report", data=values)
    assert sent.status_code == 303, sent.text
    assert len(await reported(js)) == 1


async def test_a_kept_report_that_is_invalid_comes_back_as_the_form_to_fix(web, js):
    form = await filled_then_signed_out(web)
    kept = await web.post("/report", data={**form, "agent_count": "lots"})
    signin = {**hidden(kept.text), "school_id": "hamline", "intake_key": HAMLINE_KEY}
    fix = await web.post("/signin", data=signin)
    assert fix.status_code == 422 and 'id="error-summary"' in fix.text
    assert 'value="Loading dock"' in fix.text
    assert await reported(js) == []
    # Signed in by the key given: the corrected form goes out.
    values = {**form, **hidden(fix.text), "agent_count": "3"}
    sent = await web.post("/report", data=values)
    assert sent.status_code == 303, sent.text
    assert len(await reported(js)) == 1


async def test_a_forging_site_gets_no_sign_in_page_and_nothing_is_sent(web, js):
    form = await filled_then_signed_out(web)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        forged = await web.post("/report", data=form, headers=headers)
        assert forged.status_code == 403 and 'name="intake_key"' not in forged.text
        assert "report.location" not in forged.text
    # Sign-in fields forged onto our own sign-in form still need the key: without it,
    # nothing is sent.
    page = await web.get("/")
    fields = {**hidden(page.text), **{f"report.{k}": v for k, v in TYPED.items()}}
    guess = await web.post("/signin", data={**fields, "school_id": "hamline", "intake_key": "x"})
    assert guess.status_code == 401
    assert await reported(js) == []


async def test_the_key_page_changes_language_with_the_report_still_carried(web, js):
    form = await filled_then_signed_out(web)
    kept = await web.post("/report?lang=en", data=form)
    carried = hidden(kept.text)
    switch = {k: v for k, v in carried.items() if k.startswith("report.")}
    assert 'action="/signin?lang=es"' in kept.text  # the language button is a form
    es = await web.post("/signin?lang=es", data={**switch, "switch_page": "1"})
    assert es.status_code == 200 and 'lang="es"' in es.text
    assert "No se perdió nada" in es.text and "Loading dock" in es.text
    assert {k: v for k, v in hidden(es.text).items() if k.startswith("report.")} == switch
    assert await reported(js) == []
    signin = {**hidden(es.text), "school_id": "hamline", "intake_key": HAMLINE_KEY}
    sent = await web.post("/signin?lang=es", data=signin)
    assert sent.status_code == 303, sent.text
    assert len(await reported(js)) == 1
