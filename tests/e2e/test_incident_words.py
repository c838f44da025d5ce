"""The incident page, acknowledgement pages and alert emails as a person under stress meets
them, in a real browser: a plain "alert sent" banner in local time (English and Spanish),
All clear only after a second step, ack pages that say which incident, nothing wider than
320 px, and axe-core clean (every impact) on each.

Runs its own stack (the fixtures of test_browser.py, module-scoped)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from schemas.events import NotificationRequested, derive_id
from schemas.report import EncounterReport
from services.domain.tokens import AckClaim, Keyring, ack_token
from services.notifier.message import build_email
from tests.e2e import test_browser
from tests.e2e.test_browser import AXE, SECRET, Stack, ack_via_api, new_page, shot
from tests.support import HAMLINE_KEY, report
from tests.unit.test_message import AT, CTX, NID, encounter, html_of

# The same module-scoped fixtures (a stack and a browser of this module's own).
stack = test_browser.stack
browser = test_browser.browser

CHICAGO = ZoneInfo("America/Chicago")  # deploy/examples/district.yaml `timezone`


def all_violations(page: Any) -> list[dict[str, Any]]:
    """Every axe-core violation on the page, whatever its impact."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
    ]


def overflow_at_320(page: Any) -> int:
    """The page's scroll width with the window 320 px wide (WCAG 1.4.10 reflow)."""
    page.set_viewport_size({"width": 320, "height": 640})
    return int(page.evaluate("document.scrollingElement.scrollWidth"))


def reported(stack: Stack, **fields: Any) -> dict[str, Any]:
    resp = httpx.post(
        f"{stack.base}/api/v1/encounters",
        json=report(**fields),
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        timeout=5,
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def status_of(stack: Stack, incident_id: str) -> dict[str, Any]:
    return dict(
        httpx.get(
            f"{stack.base}/api/v1/incidents/{incident_id}",
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
            timeout=5,
        ).json()
    )


def clock(at: str, fmt: str) -> str:
    """An event time (ISO, UTC) as the district's clock shows it."""
    return datetime.fromisoformat(at).astimezone(CHICAGO).strftime(fmt)


def first_alert_sent(stack: Stack, incident_id: str) -> str:
    sent = [
        n["sent_at"]
        for n in status_of(stack, incident_id)["notifications"]
        if n["kind"] == "alert" and n["sent_at"]
    ]
    return min(sent)


def link_for(incident_id: str, role: str, contact_id: str, *, expires_in: int = 600) -> str:
    claim = AckClaim(
        incident_id, "hamline", role, contact_id, f"n-{contact_id}", int(time.time()) + expires_in
    )
    return f"/ack/{ack_token(Keyring.of([SECRET]), claim)}"


def test_banner_says_when_and_to_whom_the_alert_went_then_who_confirmed(stack, browser):
    made = reported(stack)
    page, _ = new_page(browser)
    page.goto(made["page_url"])
    banner = page.locator("#banner")
    banner.filter(has_text="Alert sent at").wait_for(timeout=15_000)
    incident_id = made["incident_id"]
    sent_at = clock(first_alert_sent(stack, incident_id), "%-I:%M %p")
    text = banner.inner_text()
    assert f"Alert sent at {sent_at} to the law department" in text, text
    assert "waiting for them to confirm" in text
    assert "Keep the agents outside." in text and "Call +1 555 0100" in text
    # "Reported" is when it was sent, in the district's time, not UTC.
    facts = page.inner_text("table.facts")
    assert "UTC" not in page.inner_text("#live") and re.search(r"(CST|CDT)", facts), facts
    ack_via_api(stack, incident_id)
    banner.filter(has_text="Confirmed by the law department").wait_for(timeout=10_000)
    acked = next(a for a in status_of(stack, incident_id)["acknowledgements"])
    assert f"Confirmed by the law department at {clock(acked['at'], '%-I:%M %p')}" in (
        banner.inner_text()
    )
    # Every contact once, each notification labelled by what it was.
    rows = page.locator("#alerted tbody tr")
    names = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert len(names) == len(set(names)) and "Alert: delivered" in page.inner_text("#alerted")
    assert all_violations(page) == []
    shot(page, "incident-banner-en")
    assert overflow_at_320(page) <= 320


def test_spanish_banner_local_times_and_translated_severity(stack, browser):
    made = reported(stack, location="Puerta del gimnasio")
    page, _ = new_page(browser, lang="es-ES", mobile=True)
    page.goto(made["page_url"])
    banner = page.locator("#banner")
    banner.filter(has_text="Alerta enviada a las").wait_for(timeout=15_000)
    sent_at = clock(first_alert_sent(stack, made["incident_id"]), "%H:%M")
    text = banner.inner_text()
    assert f"Alerta enviada a las {sent_at} al departamento legal" in text, text
    assert "esperando su confirmación" in text and "Llame al +1 555 0100" in text
    severity = page.locator("table.facts tr", has_text="Gravedad").inner_text()
    assert not re.search(r"critical|high|info\b", severity), severity
    assert "UTC" not in page.inner_text("#live")
    assert all_violations(page) == []
    shot(page, "incident-banner-es-phone")
    assert overflow_at_320(page) <= 320


def test_all_clear_needs_a_second_step(stack, browser):
    # (The same step without JavaScript: test_browser's no-JS test, for "agents have left".)
    made = reported(stack, location="Loading dock")
    incident_id = made["incident_id"]
    page, _ = new_page(browser)
    page.goto(stack.base + "/")
    page.select_option("#school_id", "hamline")
    page.fill("#intake_key", HAMLINE_KEY)
    page.click("button[type=submit]")
    page.wait_for_selector("form#report")
    page.goto(f"{stack.base}/incidents/{incident_id}")
    page.click("button[value=resolve]")
    page.wait_for_selector("text=Send the all clear?")
    # The first press recorded nothing.
    assert status_of(stack, incident_id)["status"] == "open"
    assert all_violations(page) == []
    assert overflow_at_320(page) <= 320
    page.set_viewport_size({"width": 1000, "height": 900})
    page.click("text=No, go back")
    assert status_of(stack, incident_id)["status"] == "open"
    page.click("button[value=resolve]")
    page.click("button[name=confirm][value=yes]")
    page.wait_for_url(re.compile(rf"/incidents/{incident_id}"))
    assert status_of(stack, incident_id)["status"] == "resolved"
    assert "All clear at" in page.inner_text("#banner")


def test_ack_page_names_the_incident_in_the_recipients_language(stack, browser):
    made = reported(stack, location="Side gate")
    incident_id = made["incident_id"]
    ack_via_api(stack, incident_id)  # the law department confirmed first
    page, _ = new_page(browser, mobile=True)  # an English browser...
    page.goto(stack.base + link_for(incident_id, "family_liaison", "liaison-hamline"))
    # ...but the liaison reads Spanish (district.yaml `language: es`).
    assert page.get_attribute("html", "lang") == "es"
    main = page.inner_text("main")
    assert "Agentes en Hamline Elementary" in main and "Side gate" in main
    assert "el departamento legal (Law Department (on call))" in main
    assert all_violations(page) == []
    assert overflow_at_320(page) <= 320
    shot(page, "ack-es-phone")
    page.click("text=Confirmo")
    page.wait_for_selector("text=Su confirmación quedó registrada")
    page.click("text=Abrir la página del incidente")
    page.wait_for_selector("#banner")
    assert "Side gate" in page.inner_text("#live")


def test_an_expired_ack_link_says_so_in_words_for_a_link(stack, browser):
    made = reported(stack)
    page, _ = new_page(browser)
    link = link_for(made["incident_id"], "law", "law-dept", expires_in=-5)
    page.goto(stack.base + link)
    main = page.inner_text("main")
    assert "This confirmation link has expired" in main and "+1 555 0100" in main
    assert "sign-in" not in main.lower() and "signed in" not in main.lower()
    assert all_violations(page) == []


@pytest.mark.parametrize("language", ["en", "es"])
def test_alert_email_html_has_a_title_language_and_landmarks(browser, language):
    r = EncounterReport.model_validate({**report(), "occurred_at": AT})
    request = NotificationRequested(
        id=derive_id(NID, "requested"),
        source="router",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=AT,
        recorded_at=AT,
        correlation_id="inc-1",
        actor="system",
        data={
            "notification_id": NID,
            "role": "law",
            "contact_id": "law-dept",
            "channel": "email",
            "severity": "critical",
            "routes": ["any-encounter"],
        },
    )
    msg = build_email(
        request=request,
        report=encounter(r),
        ctx=CTX,
        sender="dooralert <alerts@dooralert.invalid>",
        to="law@district.example",
        language=language,
        ack_url="http://dooralert.example/ack/abc",
    )
    page, _ = new_page(browser)
    page.set_content(html_of(msg))
    assert page.get_attribute("html", "lang") == language
    assert "Hamline Elementary" in page.title()
    assert page.locator("main h1").count() == 1
    assert all_violations(page) == []
