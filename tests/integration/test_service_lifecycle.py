"""The router and notifier as the processes an orchestrator runs: their health port (/livez,
/readyz, /metrics), SIGTERM while an alert is being sent (it finishes and is recorded, once),
and a NATS restart on the same port and store (a report after it is still delivered)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import httpx

from services.domain.directory import load_directory
from services.eventlog import STREAM
from tests.support import (
    EXAMPLES,
    HAMLINE_KEY,
    REPO,
    TEST_SECRET,
    NatsServer,
    SmtpServer,
    eventually,
    free_port,
    report,
)

# No contact's id, name or address may appear in the metrics.
PERSONAL = [
    value
    for c in load_directory(EXAMPLES).contacts
    for value in (c.id, c.name, *(getattr(ch, "address", "") or "" for ch in c.channels))
    if value
]


def spawn(
    command: str, nats_url: str, smtp_port: int, metrics_port: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats_url,
        "DOORALERT_SMTP_HOST": "127.0.0.1",
        "DOORALERT_SMTP_PORT": str(smtp_port),
        "DOORALERT_CONFIG_DIR": str(EXAMPLES),
        "DOORALERT_SECRET_KEYS": TEST_SECRET,
        "DOORALERT_LOG_LEVEL": "warning",
        "DOORALERT_METRICS_PORT": str(metrics_port),
        "DOORALERT_RETRY_BASE_SECONDS": "0.05",
        "DOORALERT_RETRY_MAX_SECONDS": "0.5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", command],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


async def status(port: int, path: str) -> int:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"http://127.0.0.1:{port}{path}")).status_code
    except httpx.HTTPError:
        return 0


async def metrics(port: int) -> str:
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


async def file_report(intake: httpx.AsyncClient) -> str:
    """A report through intake, as a school files it; its incident id."""
    resp = await intake.post(
        "/api/v1/encounters", json=report(), headers={"Authorization": f"Bearer {HAMLINE_KEY}"}
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["incident_id"])


async def test_services_are_live_ready_and_measured_and_deliver_after_a_nats_restart(
    js: Any, nats_server: NatsServer, smtp: SmtpServer, intake_client: httpx.AsyncClient
) -> None:
    router_port, notifier_port = free_port(), free_port()
    router = spawn("router", nats_server.url, smtp.port, router_port)
    notifier = spawn("notifier", nats_server.url, smtp.port, notifier_port)
    try:
        for port in (router_port, notifier_port):
            await eventually(lambda p=port: _is(p, "/readyz", 200), timeout=20)  # type: ignore[misc]
            assert await status(port, "/livez") == 200
        first = await file_report(intake_client)
        alerted = len(await _events(js, first, "notification.requested"))
        assert alerted >= 3
        await eventually(lambda: len(smtp.received) >= alerted, timeout=20)
        text = await eventually(
            lambda: _with(notifier_port, "dooralert_notifications_sent_total"), timeout=10
        )
        email_alert = {"channel": "email", "kind": "alert"}
        assert sample(text, "dooralert_notifications_sent_total", **email_alert) == alerted
        assert sample(text, "dooralert_delivery_latency_seconds_count", **email_alert) == alerted
        assert sample(text, "dooralert_smtp_up") == 1.0
        assert sample(text, "dooralert_nats_connected", service="notifier") == 1.0
        assert [p for p in PERSONAL if p in text] == []

        # NATS goes away: the processes stay alive (liveness never asks NATS), not ready.
        nats_server.stop()
        await eventually(lambda: _is(notifier_port, "/readyz", 503), timeout=10)
        assert await status(notifier_port, "/livez") == 200
        assert await status(router_port, "/livez") == 200
        assert router.poll() is None and notifier.poll() is None

        # Back on the same port and store: both reconnect and a new report is delivered.
        nats_server.start()
        for port in (router_port, notifier_port):
            await eventually(lambda p=port: _is(p, "/readyz", 200), timeout=30)
        # Intake reconnected too: the report is recorded (retried while it reconnects).
        await file_report(intake_client)
        await eventually(lambda: len(smtp.received) >= 2 * alerted, timeout=30)
        await asyncio.sleep(2)  # nothing more comes (no duplicate after the restart)
        assert len({str(r.message["Message-ID"]) for r in smtp.received}) == 2 * alerted
        assert len(smtp.received) == 2 * alerted
    finally:
        stop(router)
        stop(notifier)


async def _with(port: int, needle: str) -> str | None:
    text = await metrics(port)
    return text if f"{needle}{{" in text else None


async def _is(port: int, path: str, code: int) -> bool:
    return await status(port, path) == code


class SlowHandler:
    """Accepts every message after `delay` seconds; `started` is set when one is in DATA."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started = threading.Event()
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.started.set()
        await asyncio.sleep(self.delay)
        self.received.append(bytes(envelope.original_content or envelope.content))
        return "250 OK queued"


async def test_sigterm_while_alerts_are_being_sent_finishes_and_records_each_once(
    js: Any, nats_server: NatsServer, intake_client: httpx.AsyncClient
) -> None:
    from aiosmtpd.controller import Controller

    handler = SlowHandler(delay=3.0)
    smtp_port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    router_port, metrics_port = free_port(), free_port()
    router = spawn("router", nats_server.url, smtp_port, router_port)
    notifier = spawn("notifier", nats_server.url, smtp_port, metrics_port)
    try:
        await eventually(lambda: _is(metrics_port, "/readyz", 200), timeout=20)
        await eventually(lambda: _is(router_port, "/readyz", 200), timeout=20)
        incident = await file_report(intake_client)
        await eventually(handler.started.is_set, timeout=20)
        notifier.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(notifier.wait, 25)
        assert code == 0
        # Every alert of the report was in hand (fewer than the workers): each was sent
        # whole, and recorded before the process ended...
        requested = await _events(js, incident, "notification.requested")
        assert len(handler.received) == len(requested) >= 3
        assert len(await _events(js, incident, "notification.sent")) == len(requested)
        # ...and acknowledged: no redelivery, so no second email from the next notifier.
        info = await js.consumer_info(STREAM, "notifier")
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        stop(notifier)
        stop(router)
        controller.stop()


async def _events(js: Any, incident: str, kind: str) -> list[bytes]:
    """The stored payloads of one kind of event about an incident."""
    sub = await js.subscribe(f"dooralert.hamline.{incident}.{kind}", ordered_consumer=True)
    found: list[bytes] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except Exception:  # noqa: BLE001 - timeout: no more
                return found
            found.append(msg.data)
    finally:
        await sub.unsubscribe()
