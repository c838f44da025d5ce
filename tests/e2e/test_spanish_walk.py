"""Every page a person can reach, walked in Spanish in a real browser: no English left.

The words that must not appear are derived from the catalogue (services/domain/i18n.py and
the board's words): every English string whose Spanish differs, cut at its placeholders, plus
the intake's English refusal messages and the framework's stock English. What may stay
English is data, not words: school, contact and door names from district.yaml, the phone
number, ids. Each page is also checked with axe-core (every impact) and at 320 px wide.

Runs its own stack (the fixtures of test_browser.py, module-scoped)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from functools import cache
from typing import Any

import httpx

from services.domain.board import BOARD_TEXT
from services.domain.directory import load_directory
from services.domain.i18n import MESSAGES, ROLES, VALUES
from services.domain.tokens import AckClaim, Keyring, ack_token
from services.intake.domain import acks as ack_words
from services.intake.domain import followups, idempotency
from services.intake.domain.screen import WITHHELD_LOCATION
from tests.e2e import test_browser
from tests.e2e.test_browser import AXE, SECRET, Stack, ack_via_api, new_page
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY, report

# The same module-scoped fixtures (a stack and a browser of this module's own).
stack = test_browser.stack
browser = test_browser.browser

BOARD_KEY = "demo-district-board-key"
FAILING = "principal@hamline.district.example"  # this module's SMTP server refuses it

# English a page could show that is no catalogue entry: the web framework's own answers,
# validation messages, and words the intake wrote in English before (its refusals).
STOCK_ENGLISH = [
    "Not Found",
    "Method Not Allowed",
    "Internal Server Error",
    "invalid request",
    "invalid report",
    "Field required",
    "String should",
    "Input should",
    "unknown action",
    "internal error",
    "mailbox",
    "gave up after",
    "characters left",
    "characters too many",
    ack_words.OTHER_INCIDENT,
    ack_words.NOT_IN_LOG,
    ack_words.ALREADY_ACKNOWLEDGED,
    ack_words.RESOLVED,
    followups.ALREADY_RESOLVED,
    idempotency.KEY_REUSED,
]


def catalogue(language: str) -> dict[str, str]:
    """Every word the pages take from the catalogues, by key, in `language`."""
    words = {f"value.{k}": v for k, v in VALUES[language].items()}  # type: ignore[index]
    words |= {f"role.{k}": v for k, v in ROLES[language].items()}  # type: ignore[index]
    words |= dict(MESSAGES[language])  # type: ignore[index]
    return words | BOARD_TEXT[language]


@cache
def english_phrases() -> tuple[str, ...]:
    """What must not appear on a Spanish page: each English catalogue string whose Spanish
    differs, cut at its placeholders into phrases; a phrase that is also Spanish is left out
    (it appears in the Spanish catalogue as a word, e.g. "principal")."""
    en, es = catalogue("en"), catalogue("es")
    spanish = " ".join(es.values()).lower()
    phrases: set[str] = set()
    for key, english in en.items():
        if key.endswith(".format") or key.startswith("switch_") or es.get(key) == english:
            continue
        for part in re.split(r"\{[^}]*\}", english):
            part = part.strip(" .,:;—–-…()?!")
            if len(part) < 3 or not re.search(r"[A-Za-z]{3}", part):
                continue
            if re.search(rf"(?<!\w){re.escape(part.lower())}(?!\w)", spanish):
                continue
            phrases.add(part)
    phrases |= set(STOCK_ENGLISH) | {WITHHELD_LOCATION}
    # A field value's raw spelling ("kept_outside") shown instead of its words.
    phrases |= {k for k in VALUES["en"] if "_" in k}
    return tuple(sorted(phrases, key=len, reverse=True))


@cache
def proper_names() -> tuple[str, ...]:
    """Data that stays as the district wrote it: names of the district, schools, contacts
    and doors, and the emergency phone number (longest first, so a name inside another goes
    with it)."""
    directory = load_directory(EXAMPLES)
    names = [directory.district.name, directory.district.emergency_phone or "", "dooralert"]
    names += [s.name for s in directory.schools] + [c.name for c in directory.contacts]
    names += [d for s in directory.schools for d in s.doors]
    return tuple(sorted({n for n in names if n}, key=len, reverse=True))


VISIBLE_TEXT = """() => {
  const out = [document.title, document.body ? document.body.innerText : ""];
  for (const el of document.querySelectorAll("[title], [aria-label], [placeholder], [alt]")) {
    for (const a of ["title", "aria-label", "placeholder", "alt"]) {
      if (el.hasAttribute(a)) out.push(el.getAttribute(a));
    }
  }
  for (const el of document.querySelectorAll(
    "input[type=submit], input[type=button], input[type=reset]")) out.push(el.value);
  return out.join("\\n");
}"""


def english_left(page: Any) -> list[str]:
    """The English phrases on the page (its visible text and labelling attributes)."""
    text = page.evaluate(VISIBLE_TEXT)
    for name in proper_names():
        text = text.replace(name, " ")
    text = " ".join(text.split()).lower()
    return [
        p for p in english_phrases() if re.search(rf"(?<!\w){re.escape(p.lower())}(?!\w)", text)
    ]


def all_violations(page: Any) -> list[dict[str, Any]]:
    """Every axe-core violation on the page, whatever its impact."""
    page.evaluate(AXE.read_text(encoding="utf-8"))  # via DevTools: not subject to the CSP
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
    ]


class Walk:
    """The pages seen so far, and what was wrong on each (checked all at once at the end,
    so that one run lists every leftover)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.problems: list[str] = []

    def check(self, page: Any, where: str, *, status: int | None = None) -> None:
        page.wait_for_load_state()
        self.seen.append(where)
        if status is not None and status >= 500:
            self.problems.append(f"{where}: answered {status}")
        lang = page.get_attribute("html", "lang")
        if lang != "es":
            self.problems.append(f"{where}: <html lang={lang!r}> ({page.url})")
        if left := english_left(page):
            self.problems.append(f"{where}: English left: {left}")
        if bad := all_violations(page):
            self.problems.append(f"{where}: axe: {bad}")
        size = page.viewport_size
        page.set_viewport_size({"width": 320, "height": 640})
        width = int(page.evaluate("document.scrollingElement.scrollWidth"))
        page.set_viewport_size(size)
        if width > 320:
            self.problems.append(f"{where}: {width} px wide at 320 px")

    def done(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def goto(page: Any, url: str) -> int:
    resp = page.goto(url)
    return int(resp.status) if resp else 0


def spanish_sign_in(page: Any, base: str, walk: Walk | None = None) -> None:
    page.goto(base + "/")
    if walk:
        walk.check(page, "sign-in")
        page.select_option("#school_id", "hamline")
        page.fill("#intake_key", "not-the-key")
        page.click("form[action^='/signin'] button[type=submit]")
        page.wait_for_selector("#signin-error")
        walk.check(page, "sign-in, wrong key")
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("form[action^='/signin'] button[type=submit]")
    page.wait_for_selector("#location")


def set_value(page: Any, selector: str, value: str) -> None:
    """A value a person could not type (a tampered or odd submission), set by script."""
    page.evaluate(
        "([s, v]) => { const el = document.querySelector(s); if (el.type === 'time' ||"
        " el.type === 'number') el.type = 'text'; el.value = v; }",
        [selector, value],
    )


def test_sign_in_the_form_and_every_form_error_in_spanish(stack: Stack, browser: Any) -> None:
    walk = Walk()
    page, _ = new_page(browser, lang="es-ES", mobile=True)
    spanish_sign_in(page, stack.base, walk)
    walk.check(page, "form")
    # A door district.yaml names in Spanish is offered so (the report keeps its English name).
    tiles = page.locator(".doors .tile span").all_inner_texts()
    [hamline] = [s for s in load_directory(EXAMPLES).schools if s.id == "hamline"]
    for door in hamline.doors:
        if door.name_in("es") not in tiles or (door.name_in("es") != door and door in tiles):
            walk.problems.append(f"form: door {door!r} offered as {tiles}")
    # Before Send nobody has been alerted yet: the form never says they have, in either
    # language (all of it, the guidance for documents not chosen yet included).
    page.goto(stack.base + "/?lang=en")
    before_send = page.evaluate("document.querySelector('main').textContent")
    page.goto(stack.base + "/?lang=es")
    before_send += page.evaluate("document.querySelector('main').textContent")
    for done in ("has been alerted", "have been alerted", "ha sido avisado", "han sido avisados"):
        if done in before_send:
            walk.problems.append(f"form: says {done!r} before Send")
    page.click("#more-summary")
    page.fill("#notes", "Una camioneta gris")
    count = page.inner_text("#notes-count")
    if count != "482 caracteres restantes":
        walk.problems.append(f"form: notes counter says {count!r}")
    page.fill("#notes", "x" * 499)
    if (one := page.inner_text("#notes-count")) != "1 carácter restante":
        walk.problems.append(f"form: notes counter says {one!r}")
    page.fill("#notes", "x" * 501)
    if (over := page.inner_text("#notes-count")) != "1 carácter de más":
        walk.problems.append(f"form: notes counter says {over!r}")
    walk.check(page, "form, details open")
    # No door, notes too long, no agents.
    page.fill("#agent_count", "0")
    page.click("#send")
    page.wait_for_selector("#error-summary")
    walk.check(page, "form errors: door, notes too long, count")
    # A door too long, a count in letters, a time that is none, no answer on credentials,
    # a choice that is not offered, notes with a control character.
    page.click("label[for=door-other]")
    set_value(page, "#location", "P" * 121)
    set_value(page, "#agent_count", "tres")
    page.evaluate(
        "document.querySelectorAll('[name=credentials_shown]').forEach(r => { r.checked = false; })"
    )
    page.evaluate(
        "() => { const s = document.querySelector('#agency_stated');"
        " const o = document.createElement('option'); o.value = 'bogus'; o.text = 'x';"
        " s.add(o); s.value = 'bogus'; }"
    )
    set_value(page, "#notes", "una\u0007nota")
    page.click("#send")
    page.wait_for_selector("#error-summary")
    summary = page.inner_text("#error-summary")
    assert summary.count("\n") >= 5, summary
    walk.check(page, "form errors: door too long, count, credentials, choice, notes")
    set_value(page, "#occurred_time", "25:99")
    page.click("#send")
    page.wait_for_selector("#occurred_time-error")
    walk.check(page, "form errors: time")
    # A tampered submission id, then a tampered CSRF token.
    page.click("label[for=door-0]")
    set_value(page, "#location", "")
    set_value(page, "#agent_count", "2")
    set_value(page, "#occurred_time", "")
    page.check("#credentials_shown-false")
    page.select_option("#agency_stated", "ice")
    set_value(page, "#notes", "")
    set_value(page, "#report input[name=submission_id]", "no es un id!")
    page.click("#send")
    page.wait_for_selector("p.banner")
    walk.check(page, "form: submission id not valid", status=400)
    set_value(page, "#report input[name=csrf_token]", "manipulado")
    page.click("#send")
    page.wait_for_selector("p.banner")
    walk.check(page, "error: form expired (CSRF)")
    walk.done()


def test_held_back_text_its_language_switch_and_a_refused_update(
    stack: Stack, browser: Any
) -> None:
    walk = Walk()
    page, _ = new_page(browser, lang="es-ES", mobile=True)
    spanish_sign_in(page, stack.base)
    page.fill("#location", "Puerta de la maestra, tel. 651-555-0188")  # the door held back too
    page.click("#more-summary")
    held = "Buscan a la alumna Maria Lopez, tel. 651-555-0199"
    page.fill("#notes", held)
    page.click("#send")
    page.wait_for_selector("#held-notice")
    walk.check(page, "held back")
    assert page.locator("ul.held li").count() == 2
    typed = page.input_value("#held_notes") + " (revisado)"
    page.fill("#held_notes", typed)
    # The language switch here re-shows the page in English with what was typed, then back.
    page.click("header [lang]")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "en", page.url
    assert page.locator("#held_notes").count() == 1, page.inner_text("body")[:300]
    assert page.input_value("#held_notes") == typed
    assert page.locator("ul.held li").count() == 2
    page.click("header [lang]")
    page.wait_for_selector("#held_notes")
    assert page.get_attribute("html", "lang") == "es"
    assert page.input_value("#held_notes") == typed
    assert page.locator("ul.held li").count() == 2
    walk.check(page, "held back, after switching language twice")
    # Still a phone number: refused again, nothing sent.
    page.click("button[name=action][value=notes]")
    page.wait_for_selector("#held-notice")
    walk.check(page, "held back again (update refused)")
    page.click("header [lang]")  # in English: still refused, the text as typed
    page.wait_for_selector("#held_notes")
    assert page.get_attribute("html", "lang") == "en"
    assert page.input_value("#held_notes") == typed
    assert "still" in page.inner_text("#held-notice")
    page.click("header [lang]")
    page.wait_for_selector("#held_notes")
    page.fill("#held_notes", "Preguntaron por una alumna; no dimos datos.")
    page.click("button[name=action][value=notes]")
    page.wait_for_url(re.compile(r"/incidents/"))
    page.locator("#live li[data-status=sent]").first.wait_for(timeout=15_000)
    walk.check(page, "incident, after an update from the held-back page")
    walk.done()


def test_held_back_language_switch_without_javascript(stack: Stack, browser: Any) -> None:
    page, _ = new_page(browser, lang="es-ES", js=False)
    spanish_sign_in(page, stack.base)
    page.click("label[for=door-3]")
    page.click("#more-summary")
    page.fill("#notes", "Preguntan por Maria Lopez, tel. 651-555-0199")
    page.click("#send")
    page.wait_for_selector("#held-notice")
    page.fill("#held_notes", "Preguntan por una alumna")
    page.click("header [lang]")
    page.wait_for_selector("#held_notes")
    assert page.get_attribute("html", "lang") == "en"
    assert page.input_value("#held_notes") == "Preguntan por una alumna"
    assert "looks like a phone number" in page.inner_text("ul.held")


def test_incident_page_deliveries_follow_ups_and_error_pages_in_spanish(
    stack: Stack, browser: Any
) -> None:
    walk = Walk()
    stack.smtp.handler.reply_for = lambda rcpts: (
        "550 5.1.1 <principal@hamline.district.example>: mailbox unavailable"
        if FAILING in rcpts
        else None
    )
    try:
        page, _ = new_page(browser, lang="es-ES", mobile=True)
        spanish_sign_in(page, stack.base)
        page.click("label[for=door-2]")
        page.click("#send")
        page.wait_for_url(re.compile(r"/incidents/"))
        incident_url = page.url.split("?")[0]
        incident_id = incident_url.rsplit("/", 1)[1]
        page.locator("#live li[data-status=failed]").first.wait_for(timeout=20_000)
        page.locator("#live li[data-status=sent]").nth(2).wait_for(timeout=15_000)
        walk.check(page, "incident: sent and one failed")
        ack_via_api(stack, incident_id)
        page.wait_for_selector("#acks li", timeout=10_000)
        walk.check(page, "incident: acknowledged")
        # A second tab, left open on the page, to send a follow-up after the all clear.
        late, _ = new_page(browser, lang="es-ES", mobile=True)
        late.context.add_cookies(page.context.cookies())
        # Its live updates cut (a phone asleep, a dropped connection): a live page would
        # reload with the buttons that apply (tests/e2e/test_live_followups.py).
        late.route(re.compile(r"/incidents/[^/]+/events"), lambda route: route.abort())
        late.goto(incident_url)
        # The agents left: a second step first.
        page.click("button[value=agents_left]")
        page.wait_for_selector("button[name=confirm][value=yes]")
        walk.check(page, "confirm: agents left")
        page.click("button[name=confirm][value=yes]")
        page.wait_for_url(re.compile(r"/incidents/"))
        # The agents are back: its second step, not taken.
        page.click("button[name=action][value=agents_back]")
        page.wait_for_selector("button[name=confirm][value=yes]")
        walk.check(page, "confirm: agents back")
        page.goto(incident_url)
        # A document shown later.
        page.select_option("#fu_document", "judicial_warrant")
        page.click("button[name=action][value=document]")
        page.wait_for_url(re.compile(r"/incidents/"))
        page.wait_for_selector("#live h2 >> nth=-1")
        walk.check(page, "incident: updates")
        # An action that does not exist (a tampered button).
        page.evaluate("document.querySelector('button[value=document]').value = 'inventada'")
        page.click("button[name=action][value=inventada]")
        page.wait_for_load_state()
        walk.check(page, "follow-up: unknown action", status=422)
        page.goto(incident_url)
        page.click("button[value=resolve]")
        page.wait_for_selector("button[name=confirm][value=yes]")
        walk.check(page, "confirm: all clear")
        page.click("button[name=confirm][value=yes]")
        page.wait_for_url(re.compile(r"/incidents/"))
        page.wait_for_selector(".done")
        walk.check(page, "incident: all clear")
        # Withdrawing the all clear: its second step, not taken.
        page.click("button[name=action][value=reopen]")
        page.wait_for_selector("button[name=confirm][value=yes]")
        walk.check(page, "confirm: reopen")
        page.goto(incident_url)
        # The tab left open: the agents left, after the all clear.
        late.click("button[value=agents_left]")
        late.wait_for_load_state()
        if late.locator("button[name=confirm][value=yes]").count():
            late.click("button[name=confirm][value=yes]")
            late.wait_for_load_state()
        walk.check(late, "follow-up after the all clear")
        # Error pages.
        walk.check(page, "404 incident", status=goto(page, f"{stack.base}/incidents/no-existe"))
        walk.check(page, "404 page", status=goto(page, f"{stack.base}/no-existe"))
        walk.check(page, "405 page", status=goto(page, f"{stack.base}/report"))
        other = httpx.post(
            f"{stack.base}/api/v1/encounters",
            json=report(school_id="lincoln-park", location="Main office entrance"),
            headers={"Authorization": f"Bearer {LINCOLN_KEY}"},
            timeout=5,
        ).json()["incident_id"]
        walk.check(page, "403 other school", status=goto(page, f"{stack.base}/incidents/{other}"))
        stranger, _ = new_page(browser, lang="es-ES", mobile=True)
        url = f"{stack.base}/incidents/{incident_id}?token=alterado"
        walk.check(stranger, "status link not valid", status=goto(stranger, url))
        walk.check(stranger, "not signed in", status=goto(stranger, incident_url))
    finally:
        stack.smtp.handler.reply_for = lambda rcpts: None
    walk.done()


def ack_link(incident_id: str, role: str, contact_id: str, *, expires_in: int = 600) -> str:
    claim = AckClaim(
        incident_id, "hamline", role, contact_id, f"n-{contact_id}", int(time.time()) + expires_in
    )
    return f"/ack/{ack_token(Keyring.of([SECRET]), claim)}"


def test_acknowledge_pages_and_the_board_in_spanish(stack: Stack, browser: Any) -> None:
    walk = Walk()
    made = httpx.post(
        f"{stack.base}/api/v1/encounters",
        json=report(location="Back gate"),
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        timeout=5,
    ).json()
    incident_id = made["incident_id"]
    page, _ = new_page(browser, lang="es-ES", mobile=True)
    good = stack.base + ack_link(incident_id, "family_liaison", "liaison-hamline")
    walk.check(page, "ack: confirm", status=goto(page, good))
    page.click("form[action^='/ack/'] button[type=submit]")
    page.wait_for_selector(".done")
    walk.check(page, "ack: thanks")
    walk.check(page, "ack: link used", status=goto(page, good))
    expired = ack_link(incident_id, "law", "law-dept", expires_in=-5)
    walk.check(page, "ack: expired", status=goto(page, f"{stack.base}{expired}?lang=es"))
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    walk.check(page, "ack: not valid", status=goto(page, forged))
    # The all clear sent: a link not yet used says no confirmation is needed.
    resolved = httpx.post(
        f"{stack.base}/api/v1/incidents/{incident_id}/resolve",
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        timeout=5,
    )
    assert resolved.status_code == 202, resolved.text
    late = stack.base + ack_link(incident_id, "principal", "principal-hamline") + "?lang=es"
    walk.check(page, "ack: incident over", status=goto(page, late))
    # The board: sign-in, a wrong key, the board, a board link not valid.
    board, _ = new_page(browser, lang="es-ES", mobile=True)
    walk.check(board, "board sign-in", status=goto(board, f"{stack.base}/board"))
    board.fill("#board_key", "no-es-la-clave")
    board.click("form[action='/board/signin'] button[type=submit]")
    board.wait_for_selector("#board-error")
    walk.check(board, "board sign-in, wrong key")
    board.fill("#board_key", BOARD_KEY)
    board.click("form[action='/board/signin'] button[type=submit]")
    board.wait_for_selector("#board-count")
    walk.check(board, "board")
    walk.check(board, "board link not valid", status=goto(board, f"{stack.base}/board?token=x"))
    # Wrong keys again and again: told to wait (and whom to call), in Spanish.
    for _ in range(12):
        board.fill("#board_key", "no-es-la-clave")
        board.click("form[action='/board/signin'] button[type=submit]")
        board.wait_for_load_state()
        if board.locator("#board_key").count() == 0:
            break
    assert board.locator("#board_key").count() == 0, "never rate-limited"
    walk.check(board, "board sign-in, too many wrong keys")
    # The incident page opened from the ack page's link (no staff session).
    page.goto(good)
    link = page.locator("a[href*='?token=']")
    if link.count():
        link.first.click()
        page.wait_for_selector("#banner")
        walk.check(page, "incident by status link")
    walk.done()


def test_every_refusal_and_error_page_has_its_words_in_both_languages() -> None:
    # What a page says instead of the API's English: a key per refusal kind and status.
    from services.intake.domain.refusals import STATUS, Refused
    from services.intake.render import STATUS_KEYS

    keys = [Refused(kind, "").key for kind in STATUS] + list(STATUS_KEYS.values())
    for key in keys:
        assert key in MESSAGES["en"] and key in MESSAGES["es"], key
        assert MESSAGES["en"][key] != MESSAGES["es"][key], key
    # The walk's list is derived from the catalogue: it holds the sentences it should.
    phrases = english_phrases()
    assert "Please enter the door" in phrases and "Notes can be at most 500 characters" in phrases
    assert (
        "Alert sent at" in phrases
        and "High" in phrases
        and "principal" not in {p.lower() for p in phrases}
    )


def test_spanish_emails_of_every_kind_have_no_english_left(browser: Any) -> None:
    from schemas.events import NotificationRequested, derive_id
    from schemas.report import EncounterReport
    from services.notifier.message import build_email
    from tests.unit.test_message import AT, CTX, NID, encounter, html_of

    walk = Walk()
    r = EncounterReport.model_validate({**report(), "occurred_at": AT})
    page, _ = new_page(browser, lang="es-ES", mobile=True)
    for kind in ("alert", "escalation", "update", "resolved", "reopened"):
        data: dict[str, Any] = {
            "notification_id": NID,
            "role": "family_liaison",
            "contact_id": "liaison-hamline",
            "channel": "email",
            "severity": "critical",
            "routes": ["any-encounter"],
            "kind": kind,
        }
        request = NotificationRequested(
            id=derive_id(NID, kind),
            source="router",
            incident_id="inc-1",
            school_id="hamline",
            occurred_at=AT,
            recorded_at=AT,
            correlation_id="inc-1",
            actor="system",
            data=data,
        )
        msg = build_email(
            request=request,
            report=encounter(r),
            ctx=replace(CTX, recipient_name="Family Liaison, Hamline Elementary"),
            sender="dooralert <alerts@dooralert.invalid>",
            to="liaison@hamline.district.example",
            language="es",
            ack_url="http://dooralert.example/ack/abc",
        )
        page.set_content(html_of(msg))
        walk.check(page, f"email: {kind}")
        subject = str(msg["Subject"])
        text = msg.get_body(("plain",))
        plain = text.get_content() if text is not None else ""
        page.set_content(
            f"<html lang='es'><title>{subject}</title><main><h1>{subject}</h1>"
            f"<pre>{plain}</pre></main></html>"
        )
        if left := english_left(page):
            walk.problems.append(f"email {kind}, subject and text part: English left: {left}")
    walk.done()
