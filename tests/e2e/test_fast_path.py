"""The report form's fast path on a phone in a real browser (Debian's Chromium): taps counted
from the signed-in form to a recorded alert, nothing typed lost on a language switch, an
error summary that takes focus, a notes counter that agrees with the server, and nothing
hidden under the pinned Send button. axe-core must find nothing, of any impact."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.e2e.test_browser import AXE, browser, new_page, sign_in, stack
from tests.support import HAMLINE_KEY

__all__ = ["browser", "stack"]  # the module's stack and browser, as in test_browser

PHONE = {"width": 390, "height": 844}


def all_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core violations of any impact on the current page."""
    page.evaluate(AXE.read_text(encoding="utf-8"))  # via DevTools: not subject to the CSP
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
    ]


def recorded(stack: Any, incident_id: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{stack.base}/api/v1/incidents/{incident_id}",
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    report: dict[str, Any] = resp.json()["report"]
    return report


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
        or a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
    )


def test_an_alert_in_two_taps_on_a_phone(stack, browser):
    page, problems = new_page(browser, mobile=True)
    sign_in(page, stack.base)  # once per device: not counted
    assert page.viewport_size == PHONE
    assert all_violations(page) == []
    send = page.locator("#send")
    box = send.bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"], box
    # The doors are large one-column tiles, the whole width of the screen.
    tiles = page.locator(".doors .tile")
    assert tiles.count() == 5
    for i in range(tiles.count()):
        tile = tiles.nth(i).bounding_box()
        assert tile is not None and tile["width"] >= 340 and tile["height"] >= 48, tile
    taps = 0
    page.tap("label[for=door-1]")  # "Gym door"
    taps += 1
    page.tap("#send")
    taps += 1
    page.wait_for_url(re.compile(r"/incidents/"))
    assert taps <= 3
    incident_id = re.search(r"/incidents/([^/?]+)", page.url).group(1)  # type: ignore[union-attr]
    report = recorded(stack, incident_id)
    assert report["location"] == "Gym door"
    assert report["document"] == "unknown" and report["agency_stated"] == "unknown"
    page.screenshot(path=str(stack_artifacts() / "form-fast-path-sent.png"), full_page=True)
    assert not [p for p in problems if "Content Security Policy" in p], problems


def stack_artifacts() -> Any:
    from tests.e2e.test_browser import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def test_nothing_is_hidden_under_the_pinned_send_button_and_selects_are_full_width(stack, browser):
    page, _ = new_page(browser, mobile=True)
    sign_in(page, stack.base)
    page.tap("#more-summary")
    page.screenshot(path=str(stack_artifacts() / "form-phone-details.png"), full_page=True)
    fields = ["location", "agency_stated", "agent_count", "occurred_time", "document"]
    fields += ["signed_by_judge", "purpose", "entry", "notes"]
    for field in fields:
        page.focus(f"#{field}")
        box = page.locator(f"#{field}").bounding_box()
        send = page.locator("#send").bounding_box()
        assert box is not None and send is not None
        assert not overlaps(box, send), (field, box, send)
        if field != "notes":
            assert box["width"] >= 340, (field, box)  # one column: no "Administrative w"
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], overflow


def test_enter_in_the_door_field_sends_nothing(stack, browser):
    page, _ = new_page(browser, mobile=True)
    sign_in(page, stack.base)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.fill("#location", "Loading dock")
    page.press("#location", "Enter")
    page.wait_for_timeout(600)
    assert posts == [] and page.url.rstrip("/") == stack.base
    assert page.input_value("#location") == "Loading dock"


def fill_some(page: Any) -> None:
    page.fill("#location", "Puerta norte")
    page.click("#more-summary")
    page.select_option("#agency_stated", "cbp")
    page.fill("#agent_count", "3")
    page.check("#credentials_shown-true")
    page.select_option("#document", "judicial_warrant")
    page.fill("#notes", "Dos agentes\nuna camioneta gris")


def test_switching_language_keeps_every_entry_with_and_without_javascript(stack, browser):
    for js in (True, False):
        page, _ = new_page(browser, js=js)
        sign_in(page, stack.base)
        fill_some(page)
        page.click("button[name=switch_lang]")
        page.wait_for_load_state()
        assert page.get_attribute("html", "lang") == "es", js
        assert "Enviar alerta" in page.inner_text("form#report")
        assert page.input_value("#location") == "Puerta norte"
        assert page.input_value("#agency_stated") == "cbp"
        assert page.input_value("#agent_count") == "3"
        assert page.is_checked("#credentials_shown-true")
        assert page.input_value("#document") == "judicial_warrant"
        assert page.input_value("#notes") == "Dos agentes\nuna camioneta gris"
        # ...and the report then goes out as typed, once.
        page.click("#send")
        page.wait_for_url(re.compile(r"/incidents/"))
        incident_id = re.search(r"/incidents/([^/?]+)", page.url).group(1)  # type: ignore[union-attr]
        report = recorded(stack, incident_id)
        assert report["location"] == "Puerta norte" and report["agent_count"] == 3
        assert report["document"] == "judicial_warrant" and report["credentials_shown"] is True


def test_errors_are_summarised_in_plain_words_and_the_summary_takes_focus(stack, browser):
    for lang, door_msg, notes_msg, js in (
        ("en-US", "Please enter the door", "Notes can be at most 500 characters", True),
        ("es-ES", "Escriba la puerta", "Las notas pueden tener como máximo 500 caracteres", True),
        ("en-US", "Please enter the door", "Notes can be at most 500 characters", False),
    ):
        page, _ = new_page(browser, lang=lang, mobile=True, js=js)
        sign_in(page, stack.base)
        page.tap("#more-summary")
        page.fill("#notes", "x" * 501)
        page.tap("#send")
        page.wait_for_selector("#error-summary")
        summary = page.inner_text("#error-summary")
        assert door_msg in summary and notes_msg in summary, summary
        assert "String should" not in page.inner_text("body")
        # (a :focus locator: page.evaluate does not run in a page without JavaScript)
        assert page.locator("#error-summary:focus").count() == 1
        assert page.input_value("#notes") == "x" * 501  # nothing typed is lost
        if not js:
            continue  # autofocus put focus on the summary; its links then only scroll
        assert all_violations(page) == []
        page.screenshot(path=str(stack_artifacts() / f"form-errors-{lang[:2]}.png"))
        page.click("#error-summary a[href='#notes']")
        assert page.evaluate("document.activeElement.id") == "notes"
        page.click("#error-summary a[href='#door-0']")
        assert page.evaluate("document.activeElement.id") == "door-0"


def test_notes_counter_counts_line_breaks_as_the_server_does(stack, browser):
    page, _ = new_page(browser)
    sign_in(page, stack.base)
    page.click("label[for=door-2]")
    page.click("#more-summary")
    page.fill("#notes", "\n".join(["x"] * 251))  # 251 + 250 line breaks = 501
    assert page.inner_text("#notes-count").startswith("1 character too many")
    page.click("#send")
    page.wait_for_selector("#error-summary")
    assert "Notes can be at most 500 characters" in page.inner_text("#error-summary")
    page.fill("#notes", "\n".join(["x"] * 250))  # 499: the counter and the server agree
    assert page.inner_text("#notes-count").startswith("1 character left")
    page.click("#send")
    page.wait_for_url(re.compile(r"/incidents/"))
