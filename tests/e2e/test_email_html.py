"""The alert email's HTML with its template whitespace collapsed (issue 13: a few lines instead
of one per tag, for the SMTP server to read) looks exactly as the template as written, in a
real browser: same pixels, same text, no serious accessibility problem; the staff notes keep
their line breaks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from services.notifier.message import TEMPLATES, Templates
from tests.e2e.test_browser import ARGS, CHROMIUM, axe_violations
from tests.unit.test_message import CTX
from tests.unit.test_wire_build import both

playwright_sync = pytest.importorskip("playwright.sync_api")

NOTES = "Two agents at the side door.\n\n  Indented second paragraph, <b>not bold</b>\nlast line"


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = b.new_context(viewport={"width": 700, "height": 900}, java_script_enabled=True)
        yield context.new_page()
        b.close()


def html(email: Any) -> str:
    part = email.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def look(page: Any, markup: str) -> tuple[bytes, str]:
    page.set_content(markup)
    return page.screenshot(full_page=True), page.inner_text("body")


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("role", ["law", "family_liaison"])
def test_the_compact_html_looks_as_the_template_as_written(
    page: Any, language: str, role: str
) -> None:
    compact, written = Templates(TEMPLATES), Templates(TEMPLATES, compact_html=False)
    cases: list[dict[str, Any]] = [
        {"kind": "escalation", "notes": NOTES},
        {"kind": "alert", "notes": None, "ack_url": None},
        {"kind": "update", "ctx": replace(CTX, emergency_phone=None)},
    ]
    for case in cases:
        args = {"role": role, "language": language, **case}
        new, _ = both(templates=compact, **args)
        old, _ = both(templates=written, **args)
        short, long = html(new), html(old)
        assert short.count("\n") * 2 < long.count("\n")
        assert look(page, short) == look(page, long), case
        assert axe_violations(page) == [], case
        if case.get("notes") == NOTES:
            shown = page.inner_text("p[style*=pre-wrap]")
            assert shown == NOTES
