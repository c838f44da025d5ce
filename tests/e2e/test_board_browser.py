"""The district board in a real browser (Debian's headless Chromium via Playwright): a new
report from any school appears on an open board within 2 s, without reloading; the board and
its sign-in pass axe-core in English and Spanish, and work without JavaScript."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    Stack,
    axe_violations,
    browser,
    new_page,
    shot,
    stack,
)
from tests.support import HAMLINE_KEY, LINCOLN_KEY, report

BOARD_KEY = "demo-district-board-key"


def every_violation(page: Any) -> list[tuple[str, str]]:
    """axe-core violations of any impact (minor and moderate too) on the current page."""
    axe_violations(page)  # loads axe-core into the page
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"]) for v in result["violations"]]


def board_sign_in(page: Any, base: str, *, lang: str = "en") -> None:
    page.goto(f"{base}/board?lang={lang}")
    page.fill("#board_key", BOARD_KEY)
    page.click("form[action='/board/signin'] button[type=submit]")
    page.wait_for_selector("#board-count")


def post_report(stack: Stack, key: str, school: str) -> str:  # noqa: F811
    made = httpx.post(
        f"{stack.base}/api/v1/encounters",
        json=report(school_id=school),
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    assert made.status_code == 202, made.text
    return str(made.json()["incident_id"])


def test_a_new_report_from_any_school_appears_on_the_open_board_within_2s(
    stack: Stack,  # noqa: F811 - the fixture imported above
    browser: Any,  # noqa: F811
) -> None:
    page, problems = new_page(browser)
    page.goto(f"{stack.base}/board")
    assert page.locator("#board_key").count() == 1  # asked for the key, nothing shown
    assert every_violation(page) == []
    board_sign_in(page, stack.base)
    page.wait_for_selector(".live-badge:not([hidden])")  # the stream is open
    for key, school in ((HAMLINE_KEY, "hamline"), (LINCOLN_KEY, "lincoln-park")):
        started = time.monotonic()
        incident = post_report(stack, key, school)
        page.wait_for_selector(f"tr[data-incident='{incident}']", timeout=2_000)
        took = time.monotonic() - started
        assert took < 2.0, took
        print(f"board: {school} report shown after {took * 1000:.0f} ms")
    first = page.get_attribute("tbody tr:first-child", "data-incident")
    assert first == incident  # the newest, still unconfirmed, is on top
    assert every_violation(page) == []
    shot(page, "board-en")
    assert problems == []


def test_the_board_in_spanish_without_javascript(
    stack: Stack,  # noqa: F811 - the fixture imported above
    browser: Any,  # noqa: F811
) -> None:
    post_report(stack, HAMLINE_KEY, "hamline")
    page, _ = new_page(browser, lang="es", js=False, mobile=True)
    board_sign_in(page, stack.base, lang="es")
    assert page.locator("h1").inner_text().startswith("Tablero del distrito")
    assert page.locator("tbody tr").count() >= 1
    refresh = page.locator("noscript").first.inner_html()
    assert 'http-equiv="refresh"' in refresh
    # Nothing overflows the phone's width: the table scrolls inside its own region.
    shot(page, "board-es-phone-nojs")
    # axe-core needs scripts: the same page in Spanish on a phone, with them.
    page, problems = new_page(browser, lang="es", mobile=True)
    board_sign_in(page, stack.base, lang="es")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    assert every_violation(page) == []
    shot(page, "board-es-phone")
    assert problems == []
    assert ARTIFACTS.exists()
