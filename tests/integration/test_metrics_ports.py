"""Intake's and the audit ledger's health ports: what an operator's Prometheus scrapes, and
that intake's published port serves no metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from services.domain.directory import load_directory
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.integration.test_service_lifecycle import _is, file_report, metrics, sample
from tests.support import EXAMPLES, REPO, NatsServer, eventually, free_port


async def test_intake_counts_reports_on_its_metrics_port_and_never_on_the_public_one(
    settings: Settings, js: Any
) -> None:
    port = free_port()
    app = create_app(
        settings.model_copy(update={"metrics_port": port}), directory=load_directory(EXAMPLES)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            before = await metrics(port)
            await file_report(client)
            wrong = await client.post(
                "/api/v1/encounters", json={}, headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401
            assert (await client.get("/metrics")).status_code == 404
            after = await eventually(
                lambda: _having(port, "dooralert_consumer_pending_messages"), timeout=10
            )
        accepted = 'dooralert_reports_accepted_total{via="api"}'
        refused = 'dooralert_reports_refused_total{reason="unauthenticated",via="api"}'
        assert _value(after, accepted) == _value(before, accepted) + 1
        assert _value(after, refused) == _value(before, refused) + 1
        assert sample(after, "dooralert_consumer_healthy", consumer="notifier") in (0.0, 1.0)
        assert await _is(port, "/readyz", 200)


async def _having(port: int, name: str) -> str | None:
    text = await metrics(port)
    return text if f"{name}{{" in text else None


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_the_ledger_is_ready_and_reports_its_tree_and_last_checkpoint(
    js: Any, nats_server: NatsServer, settings: Settings, tmp_path: Path
) -> None:
    key = tmp_path / "log.key"
    port = free_port()
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats_server.url,
        "DOORALERT_CONFIG_DIR": str(EXAMPLES),
        "DOORALERT_LOG_KEY_FILE": str(key),
        "DOORALERT_CHECKPOINT_SECONDS": "0.5",
        "DOORALERT_METRICS_PORT": str(port),
        "DOORALERT_LOG_LEVEL": "warning",
    }
    cli = [sys.executable, "-m", "services.cli.main"]
    made = await asyncio.to_thread(
        subprocess.run,
        [*cli, "keys", "generate", "--name", "test.example/log", "--out", str(key)],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    ledger = subprocess.Popen(  # noqa: ASYNC220 - only starts it
        [*cli, "audit", "serve"], env=env, cwd=REPO, stdout=subprocess.DEVNULL
    )
    try:
        await eventually(lambda: _is(port, "/readyz", 200), timeout=20)
        app = create_app(
            settings.model_copy(update={"metrics_port": 0}), directory=load_directory(EXAMPLES)
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
                await file_report(client)
        text = await eventually(lambda: _signed(port), timeout=20)
        size = sample(text, "dooralert_ledger_tree_size")
        assert size >= 1
        assert sample(text, "dooralert_ledger_checkpoint_size") == size
        assert 0 <= sample(text, "dooralert_ledger_seconds_since_checkpoint") < 30
    finally:
        ledger.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(ledger.wait, 20)
    assert code == 0


async def _signed(port: int) -> str | None:
    text = await metrics(port)
    return text if sample(text, "dooralert_ledger_checkpoint_size") >= 1 else None
