"""Nothing typed is lost, in a real browser (Debian's Chromium): a form filled, then its
cookies cleared (the session expired, signed out elsewhere, the browser's data wiped), is
kept by the sign-in page and sent intact once the key is given, in the page's language, with
or without JavaScript; and a fast-path report is completed on its incident page afterwards
(agency, how many agents, credentials, whom they ask about), the page and the update email
showing the new values. Language switching mid-form is tests/e2e/test_fast_path.py."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.e2e.test_browser import browser, new_page, shot, sign_in, stack
from tests.e2e.test_fast_path import all_violations, recorded
from tests.support import HAMLINE_KEY, LINCOLN_KEY

__all__ = ["browser", "stack"]  # the module's stack and browser, as in test_browser

NOTES = "Two agents\na grey van, engine running"


def fill_everything(page: Any) -> None:
    page.click("label[for=door-1]")  # "Gym door"
    page.click("#more-summary")
    page.select_option("#agency_stated", "cbp")
    page.fill("#agent_count", "3")
    page.check("#credentials_shown-true")
    page.fill("#occurred_time", "08:05")
    page.select_option("#document", "judicial_warrant")
    page.select_option("#signed_by_judge", "yes")
    page.select_option("#purpose", "parent")
    page.select_option("#entry", "kept_outside")
    page.fill("#notes", NOTES)


def incident_of(page: Any) -> str:
    match = re.search(r"/incidents/([^/?]+)", page.url)
    assert match, page.url
    return match.group(1)


def assert_sent_as_typed(stack: Any, incident_id: str) -> None:
    report = recorded(stack, incident_id)
    assert report["location"] == "Gym door"
    assert report["agency_stated"] == "cbp" and report["agent_count"] == 3
    assert report["credentials_shown"] is True
    assert report["document"] == "judicial_warrant" and report["signed_by_judge"] == "yes"
    assert report["purpose"] == "parent" and report["entry"] == "kept_outside"
    assert report["notes"] == NOTES
    assert ":05:00" in report["occurred_at"]  # the time typed, not the time sent


def test_cleared_cookies_keep_the_report_and_the_key_sends_it_intact(stack, browser):
    page, problems = new_page(browser)
    sign_in(page, stack.base)
    fill_everything(page)
    page.context.clear_cookies()  # the session is gone before Send is pressed
    page.click("#send")
    page.wait_for_selector("#intake_key")
    assert "Nothing you typed is lost" in page.inner_text("#signin-error")
    kept = page.inner_text("#kept")
    for words in ("Gym door", "CBP", "Judicial warrant", "A parent", "grey van"):
        assert words in kept, (words, kept)
    assert all_violations(page) == []
    shot(page, "signin-kept-en")
    # The page's language button keeps the report too (there and back).
    page.click("button[name=switch_page]")
    page.wait_for_selector("html[lang=es]")
    assert "No se perdió nada" in page.inner_text("#signin-error")
    assert "Gym door" in page.inner_text("#kept") and "Orden judicial" in page.inner_text("#kept")
    page.click("button[name=switch_page]")
    page.wait_for_selector("html[lang=en]")
    # A wrong key: refused, the report still there.
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", LINCOLN_KEY)
    page.click("#signin-submit")
    page.wait_for_selector("#signin-error")
    assert "not recognised" in page.inner_text("#signin-error")
    assert "Gym door" in page.inner_text("#kept")
    # The right key: signed in, the alert sent, the incident page says so.
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("#signin-submit")
    page.wait_for_url(re.compile(r"/incidents/"))
    page.locator("#banner").filter(has_text="Alert sent at").wait_for(timeout=15_000)
    incident_id = incident_of(page)
    assert_sent_as_typed(stack, incident_id)
    # Signed in for what comes next: the follow-up buttons are there.
    assert page.locator("button[value=resolve]").count() == 1
    assert not [p for p in problems if "Content Security Policy" in p], problems


def test_without_javascript_in_spanish_the_report_is_kept_in_spanish(stack, browser):
    page, _ = new_page(browser, js=False)
    sign_in(page, stack.base)
    page.click("button[name=switch_lang]")  # the form in Spanish (remembered in a cookie)
    page.wait_for_selector("html[lang=es]")
    fill_everything(page)
    page.context.clear_cookies()  # the language cookie goes too: the form's action keeps it
    page.click("#send")
    page.wait_for_selector("#intake_key")
    assert page.get_attribute("html", "lang") == "es"
    assert "No se perdió nada" in page.inner_text("#signin-error")
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("#signin-submit")
    page.wait_for_url(re.compile(r"/incidents/"))
    assert page.get_attribute("html", "lang") == "es"
    assert_sent_as_typed(stack, incident_of(page))


def test_the_language_button_while_signed_out_keeps_the_entries_and_sends_nothing(stack, browser):
    page, _ = new_page(browser)
    sign_in(page, stack.base)
    fill_everything(page)
    page.context.clear_cookies()
    page.click("button[name=switch_lang]")
    page.wait_for_selector("#intake_key")
    assert "Sus datos se conservan" in page.inner_text("#signin-error")
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("#signin-submit")
    page.wait_for_selector("form#report")
    assert page.get_attribute("html", "lang") == "es" and page.url.endswith("lang=es")
    assert page.is_checked("#door-1") and page.input_value("#agency_stated") == "cbp"
    assert page.input_value("#agent_count") == "3" and page.is_checked("#credentials_shown-true")
    assert page.input_value("#notes") == NOTES and page.input_value("#purpose") == "parent"
    page.click("#send")
    page.wait_for_url(re.compile(r"/incidents/"))
    assert_sent_as_typed(stack, incident_of(page))


def test_a_fast_path_report_is_completed_on_its_incident_page(stack, browser):
    page, problems = new_page(browser)
    sign_in(page, stack.base)
    page.click("label[for=door-2]")
    page.click("#send")
    page.wait_for_url(re.compile(r"/incidents/"))
    incident_id = incident_of(page)
    facts = page.locator("table.facts")
    assert "Unknown" in facts.inner_text()
    # Wait for the alert to go out, so the update below goes to everyone alerted.
    page.locator("#banner").filter(has_text="Alert sent at").wait_for(timeout=15_000)
    page.select_option("#fu_agency", "ice")
    page.fill("#fu_count", "4")
    page.check("#fu_credentials-true")
    page.select_option("#fu_purpose", "student")
    assert all_violations(page) == []
    page.click("button[name=action][value=document]")
    page.wait_for_url(re.compile(r"/incidents/"))
    text = page.inner_text("table.facts")
    assert re.search(r"Agency stated\s+ICE", text) and re.search(r"Agents\s+4", text), text
    assert re.search(r"Credentials shown\s+Yes", text), text
    assert re.search(r"Asking about\s+A student", text), text
    updates = page.inner_text("#updates")
    assert "Agency stated: ICE" in updates and "Agents: 4" in updates, updates
    shot(page, "incident-details-added")
    report = recorded(stack, incident_id)
    assert (report["agency_stated"], report["agent_count"]) == ("ice", 4)
    assert (report["credentials_shown"], report["purpose"]) == (True, "student")
    assert report["location"] == stack_door(2)
    # The update email carries the incident as it now stands.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mails = [
            m.message
            for m in stack.smtp.received
            if m.message["X-Dooralert-Incident"] == incident_id
        ]
        updated = [m for m in mails if "ICE" in str(m["Subject"])]
        if updated:
            break
        time.sleep(0.2)
    assert updated, [str(m["Subject"]) for m in mails]
    body = updated[0].get_body(("plain",))
    assert body is not None and "A student" in body.get_content()
    assert not [p for p in problems if "Content Security Policy" in p], problems


def stack_door(index: int) -> str:
    """The name of Hamline's door tile `index` (examples/district.yaml)."""
    from services.domain.directory import load_directory
    from tests.support import EXAMPLES

    school = load_directory(EXAMPLES).school("hamline")
    assert school is not None
    return school.doors[index]
