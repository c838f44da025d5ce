"""The incident page kept current with JavaScript on (server-sent events), in a real browser:
the follow-up buttons follow someone else's all-clear, reopening or "agents have left", and
the "sending is delayed" warning appears live when the mail server stops answering."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from services.domain.directory import load_directory
from services.eventlog import connect, provision
from services.runtime.settings import Settings
from tests.e2e.test_browser import (  # noqa: F401 - fixtures
    CHROMIUM,
    SECRET,
    Stack,
    browser,
    new_page,
    shot,
    sign_in,
    stack,
)
from tests.support import EXAMPLES, NatsServer, free_port

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it)"
)


def report_and_open(page: Any, base: str) -> str:
    """Send a report by the form (one door tile); the incident page's path."""
    sign_in(page, base)
    page.click("label[for=door-0]")
    page.click("form#report button[type=submit]")
    page.wait_for_url(re.compile(r"/incidents/"))
    match = re.search(r"(/incidents/[^/?]+)", page.url)
    assert match, page.url
    return match.group(1)


def press(page: Any, action: str) -> None:
    """A follow-up button, then "Yes" on the page that asks."""
    page.click(f"form.followup button[value={action}]")
    page.click("form.confirm button[value=yes]")
    page.wait_for_selector("#live")


def test_follow_up_buttons_follow_another_staff_members_press(
    stack: Stack,  # noqa: F811 - the fixture imported above
    browser: Any,  # noqa: F811
) -> None:
    first, problems = new_page(browser)
    path = report_and_open(first, stack.base)
    second, _ = new_page(browser)
    sign_in(second, stack.base)
    second.goto(stack.base + path)
    second.locator(".live-badge").wait_for(state="visible")
    assert second.locator("form.followup button[value=agents_left]").is_visible()

    # The other page says the agents left: "The agents are back" replaces it here.
    press(first, "agents_left")
    second.locator("form.followup button[value=agents_back]").wait_for(timeout=5_000)
    assert second.locator("form.followup button[value=agents_left]").count() == 0
    # The all-clear there: here only "Agents are back / reopen" is offered, within seconds.
    press(first, "resolve")
    second.locator("form.followup button[value=reopen]").wait_for(timeout=5_000)
    assert second.locator("form.followup button[value=resolve]").count() == 0
    shot(second, "incident-resolved-elsewhere")
    # Reopened here: the first page gets the open incident's buttons back.
    first.locator(".live-badge").wait_for(state="visible")
    press(second, "reopen")
    first.locator("form.followup button[value=resolve]").wait_for(timeout=5_000)
    assert first.locator("form.followup button[value=reopen]").count() == 0
    assert not [p for p in problems if "Content Security Policy" in p], problems


def test_what_is_typed_is_not_reloaded_away_by_another_staff_members_press(
    stack: Stack,  # noqa: F811 - the fixture imported above
    browser: Any,  # noqa: F811
) -> None:
    first, _ = new_page(browser)
    path = report_and_open(first, stack.base)
    second, problems = new_page(browser)
    sign_in(second, stack.base)
    second.goto(stack.base + path)
    second.locator(".live-badge").wait_for(state="visible")
    second.fill("#fu_count", "7")  # typed, not sent yet
    assert second.locator("#followup-stale").is_hidden()

    # The other page says the agents left: no reload here (it would lose the 7), but a
    # warning that the buttons may no longer apply, and the status itself is current.
    press(first, "agents_left")
    second.locator("#followup-stale").wait_for(state="visible", timeout=5_000)
    assert second.input_value("#fu_count") == "7"
    assert second.locator("form.followup button[value=agents_left]").count() == 1
    assert not [p for p in problems if "Content Security Policy" in p], problems


class SilentSmtp:
    """A mail server that takes connections and never says a word (a hung relay)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def hung_mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Intake, router and notifier whose mail server never answers, with the page's late
    threshold (DOORALERT_LATE_AFTER_SECONDS) lowered to 4 s; the intake's base URL."""
    import uvicorn

    from services.intake.app import create_app
    from services.notifier.main import build_broker as notifier_broker
    from services.router.main import build_broker as router_broker
    from services.router.rules import load_rules

    nats_server = NatsServer(store=tmp_path_factory.mktemp("nats"))
    nats_server.start()
    smtp = SilentSmtp()
    port = free_port()
    settings = Settings(
        nats_url=nats_server.url,
        config_dir=EXAMPLES,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_timeout=60.0,  # hung, not refused: the sends stay pending, none fails
        secret_key=SECRET,  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=port,
        live_poll_seconds=0.3,
        late_after_seconds=4.0,
    )
    directory = load_directory(EXAMPLES)
    started, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        nc = await connect(settings.nats_url, name="browser-tests")
        await provision(nc.jetstream())
        await nc.close()
        brokers = [
            router_broker(settings, rules=load_rules(EXAMPLES), directory=directory),
            notifier_broker(settings, directory=directory),
        ]
        for b in brokers:
            await b.start()
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
        smtp.stop()  # the notifier's hung sends end before it stops
        for b in reversed(brokers):
            await b.stop()

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(30) and not failure, failure
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(20)
        smtp.stop()
        nats_server.stop()


def test_sending_delayed_warning_appears_live(
    hung_mail: str,
    browser: Any,  # noqa: F811 - the fixture imported above
) -> None:
    page, _ = new_page(browser)
    report_and_open(page, hung_mail)
    page.locator(".live-badge").wait_for(state="visible")
    warning = page.locator("#live p.delayed[role=alert]")
    assert warning.count() == 0  # the page as first shown: not late yet
    page.evaluate("window.stillTheSamePage = true")  # (via DevTools: the CSP allows no eval)
    # Nothing is sent (the server never answers) and no event arrives: the page turns the
    # warning on by itself once the sends have waited 4 s.
    warning.wait_for(timeout=10_000)
    assert "Sending is delayed" in warning.inner_text()
    assert page.evaluate("window.stillTheSamePage === true")  # live, not reloaded
    assert page.locator("#live li[data-status=sent]").count() == 0
    shot(page, "incident-sending-delayed")
