"""The staff intake pages in a real browser (Debian's headless Chromium via Playwright).

One stack for the module: nats-server, a real SMTP server, router and notifier, and intake
served by uvicorn on a free port, all in a background thread. Screenshots go to
test-artifacts/. axe-core (vendored in tests/e2e/vendor/) checks accessibility.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.domain.directory import load_directory
from services.domain.tokens import AckClaim, Keyring, ack_token
from services.eventlog import connect, provision
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, REPO, NatsServer, SmtpServer, free_port

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
ARTIFACTS = REPO / "test-artifacts"
SECRET = "browser-test-secret-key-0123456789-abcdefghij"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it)"
)


@dataclass
class Stack:
    base: str
    settings: Settings
    smtp: SmtpServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import uvicorn

    from services.intake.app import create_app
    from services.notifier.main import build_broker as notifier_broker
    from services.router.main import build_broker as router_broker
    from services.router.rules import load_rules

    nats_server = NatsServer(store=tmp_path_factory.mktemp("nats"))
    nats_server.start()
    smtp = SmtpServer()
    smtp.start()
    port = free_port()
    settings = Settings(
        nats_url=nats_server.url,
        config_dir=EXAMPLES,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        secret_key=SECRET,  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=port,
        live_poll_seconds=0.3,
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        max_attempts=4,
    )
    directory = load_directory(EXAMPLES)
    started, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        nc = await connect(settings.nats_url, name="browser-tests")
        await provision(nc.jetstream())
        await nc.close()
        router = router_broker(settings, rules=load_rules(EXAMPLES), directory=directory)
        notifier = notifier_broker(settings, directory=directory)
        await router.start()
        await notifier.start()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, directory=directory),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.should_exit = True
        await task
        await notifier.stop()
        await router.stop()

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(30) and not failure, failure
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield Stack(f"http://127.0.0.1:{port}", settings, smtp)
    finally:
        stop.set()
        thread.join(15)
        smtp.stop()
        nats_server.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def new_page(
    browser: Any, *, lang: str = "en-US", js: bool = True, mobile: bool = False
) -> tuple[Any, list[str]]:
    context = browser.new_context(
        locale=lang,
        java_script_enabled=js,
        extra_http_headers={"Accept-Language": lang},
        viewport={"width": 390, "height": 844} if mobile else {"width": 1000, "height": 900},
        is_mobile=mobile,
        has_touch=mobile,
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


def sign_in(page: Any, base: str) -> None:
    page.goto(base + "/")
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("button[type=submit]")
    page.wait_for_selector("#location")


def more_details(page: Any) -> None:
    """Open the form's "more details" (the fast path needs only the door)."""
    if page.get_attribute("#more", "open") is None:
        page.click("#more-summary")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the current page."""
    page.evaluate(AXE.read_text(encoding="utf-8"))  # via DevTools: not subject to the page CSP
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in bad
    ]


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def ack_via_api(stack: Stack, incident_id: str, role: str = "law") -> None:
    status = httpx.get(
        f"{stack.base}/api/v1/incidents/{incident_id}",
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        timeout=5,
    ).json()
    note = next(n for n in status["notifications"] if n["role"] == role)
    token = ack_token(
        Keyring.of([SECRET]),
        AckClaim(
            incident_id,
            "hamline",
            role,
            note["contact_id"],
            note["notification_id"],
            int(time.time()) + 600,
        ),
    )
    resp = httpx.post(
        f"{stack.base}/api/v1/incidents/{incident_id}/ack", json={"token": token}, timeout=5
    )
    assert resp.status_code == 202, resp.text


def incident_id_of(page: Any) -> str:
    match = re.search(r"/incidents/([^/?]+)\?token=", page.url)
    assert match, page.url
    return match.group(1)


def test_english_report_with_guidance_live_delivery_and_acknowledgement(stack, browser):
    page, problems = new_page(browser)
    sign_in(page, stack.base)
    more_details(page)
    # Guidance follows the document chosen: only that document's text is shown.
    guidance = page.locator("#guidance")
    page.select_option("#document", "administrative_warrant")
    assert "does not allow entry" in guidance.inner_text()
    assert "judge's signature" not in guidance.inner_text()
    page.select_option("#document", "judicial_warrant")
    assert "judge's signature" in guidance.inner_text()
    assert "never share student information" in guidance.inner_text().lower()
    assert page.input_value("#entry") == "kept_outside"  # sensible defaults
    assert re.fullmatch(r"\d\d:\d\d", page.input_value("#occurred_time"))
    assert axe_violations(page) == []
    page.fill("#location", "Front entrance")
    page.select_option("#agency_stated", "ice")
    page.fill("#agent_count", "2")
    page.check("input[name=credentials_shown][value=true]")
    page.select_option("#signed_by_judge", "unsure")
    page.fill("#notes", "Two agents in a grey van")
    assert "476" in page.inner_text("#notes-count")
    shot(page, "form-en")
    page.click("form#report button[type=submit]")
    page.wait_for_url(re.compile(r"/incidents/"))
    incident_id = incident_id_of(page)
    url = page.url
    # The page updates in place (server-sent events) as each email is delivered...
    # (a locator, not wait_for_function: the page's CSP forbids eval, as it should)
    page.locator("#live li[data-status=sent]").nth(3).wait_for(timeout=15_000)
    assert page.url == url
    assert page.locator(".live-badge").is_visible()
    # ...and when a responder acknowledges.
    ack_via_api(stack, incident_id)
    page.wait_for_selector("#acks li", timeout=10_000)
    assert "Law Department (on call)" in page.inner_text("#acks")
    assert axe_violations(page) == []
    shot(page, "incident-en")
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_spanish_report_by_accept_language_and_switch_back_to_english(stack, browser):
    page, problems = new_page(browser, lang="es-ES", mobile=True)
    page.goto(stack.base + "/")
    assert page.get_attribute("html", "lang") == "es"
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("text=Iniciar sesión")
    page.wait_for_selector("#location")
    assert "Enviar alerta" in page.inner_text("form#report")
    # The form, its details folded, fits a phone screen or close to it.
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 844 * 2.2, height
    # ...and the send button is on the first screen, without scrolling.
    box = page.locator("form#report button[type=submit]").bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844, box
    more_details(page)
    page.select_option("#document", "none")
    assert "no deje entrar" in page.inner_text("#guidance").lower()
    shot(page, "form-es-phone")
    page.fill("#location", "Puerta del gimnasio")
    page.select_option("#agency_stated", "cbp")
    page.check("input[name=credentials_shown][value=false]")
    page.click("#send")
    page.wait_for_url(re.compile(r"/incidents/"))
    # (a locator, not wait_for_function: the page's CSP forbids eval, as it should)
    page.locator("#live li[data-status=sent]").nth(3).wait_for(timeout=15_000)
    assert "entregado" in page.inner_text("#live")
    assert axe_violations(page) == []
    shot(page, "incident-es-phone")
    page.click("text=English")  # switch, remembered in a cookie
    assert page.get_attribute("html", "lang") == "en"
    page.goto(stack.base + "/")
    assert "Send alert" in page.inner_text("form#report")
    assert not [p for p in problems if "Content Security Policy" in p], problems


def test_report_without_javascript_shows_all_guidance_and_refreshes(stack, browser):
    page, _ = new_page(browser, js=False)
    sign_in(page, stack.base)
    docs = page.locator("#guidance .doc")
    assert docs.count() == 7 and all(docs.nth(i).is_visible() for i in range(7))
    shot(page, "form-nojs")
    page.fill("#location", "Side door")
    more_details(page)  # details/summary opens without JavaScript
    page.select_option("#agency_stated", "unknown")
    page.check("input[name=credentials_shown][value=false]")
    page.select_option("#document", "none")
    page.click("form#report button[type=submit]")
    page.wait_for_url(re.compile(r"/incidents/"))
    assert "Side door" in page.inner_text("#live")
    assert page.locator("noscript").count() >= 1  # the meta refresh fallback
    page.click("button[value=agents_left]")  # follow-up buttons work without JS too
    page.click("button[name=confirm][value=yes]")  # after a second step
    page.wait_for_url(re.compile(r"/incidents/"))
    assert "Agents left" in page.inner_text("#live")
    shot(page, "incident-nojs")


def tab_to(page: Any, target: str, *, limit: int = 6) -> list[str]:
    """Press Tab until the element `target` (id, or "submit") has focus; the ids passed."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        active = page.evaluate("() => document.activeElement.id || document.activeElement.type")
        seen.append(active)
        if active == target:
            return seen
    raise AssertionError(f"Tab never reached {target}: {seen}")


def test_keyboard_only_submission(stack, browser):
    page, _ = new_page(browser)
    page.goto(stack.base + "/")
    kb = page.keyboard
    tab_to(page, "school_id", limit=4)  # past the language link
    tab_to(page, "intake_key")
    kb.type(HAMLINE_KEY)
    kb.press("Enter")  # Hamline is the first school: the default choice
    page.wait_for_selector("#location")
    tab_to(page, "location", limit=6)  # past the language link and sign-out
    kb.type("Back gate")
    tab_to(page, "more-summary")
    kb.press("Enter")  # opens "more details"; Enter on a field would send nothing
    tab_to(page, "agency_stated")
    kb.type("ICE")  # type-to-select
    tab_to(page, "agent_count")  # default 1
    kb.press("Tab")  # credentials: the radio group
    kb.press("Space")  # Yes
    tab_to(page, "document", limit=5)  # past the time (default: now)
    kb.type("No doc")
    passed = tab_to(page, "send", limit=8)
    # Guidance is text, not a stop; defaults keep their values; one Tab per control.
    assert passed == ["signed_by_judge", "purpose", "entry", "notes", "send"], passed
    kb.press("Enter")
    page.wait_for_url(re.compile(r"/incidents/"), timeout=10_000)
    text = page.inner_text("#live")
    assert "Back gate" in text and "ICE" in text and "No document" in text
    shot(page, "incident-keyboard")


def test_spanish_notice_of_held_back_notes_and_a_cleaned_update(stack, browser):
    page, problems = new_page(browser, lang="es-ES")
    page.goto(stack.base + "/")
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("text=Iniciar sesión")
    page.wait_for_selector("#location")
    page.fill("#location", "Entrada del gimnasio")
    more_details(page)
    page.select_option("#agency_stated", "ice")
    page.select_option("#document", "administrative_warrant")
    page.check("input[name=credentials_shown][value=true]")
    held = "Buscan a la alumna Maria Lopez, tel. 651-555-0199"
    page.fill("#notes", held)
    page.click("#send")
    # The alert is sent; the page says, in Spanish, what was held back and why.
    notice = page.locator("#held-notice")
    notice.wait_for()
    assert "La alerta salió de inmediato" in notice.inner_text()
    body = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
    assert "parece un número de teléfono" in body and "parece el nombre de una persona" in body
    assert page.input_value("#held_notes") == held
    assert axe_violations(page) == []
    shot(page, "held-es")
    page.fill("#held_notes", "Preguntaron por una alumna; no dimos datos.")
    page.click("text=Enviar como actualización")
    page.wait_for_url(re.compile(r"/incidents/"))
    assert not [p for p in problems if "Content Security Policy" in p], problems


def test_screenshots_are_saved() -> None:
    assert ARTIFACTS.exists()
