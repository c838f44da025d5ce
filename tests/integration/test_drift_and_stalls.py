"""Drift and stalls are loud (issue 10), on a real nats-server: a service stops when its
consumer is paused or deleted; /healthz and `dooralert status` turn unhealthy within seconds
of a stall; a report accepted during a stall tells staff to call the emergency line too."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from services.domain.directory import load_directory
from services.eventlog import STREAM
from services.eventlog.connection import inbox_prefix
from services.eventlog.watch import EXIT_DRIFT, run_watched
from services.intake.app import create_app
from services.router.main import CONSUMERS, build_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, REPO, TEST_SECRET, eventually, report

FAR = "2099-01-01T00:00:00Z"


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DOORALERT_NATS_URL": str(settings.nats_url),
        "DOORALERT_CONFIG_DIR": str(EXAMPLES),
        "DOORALERT_SECRET_KEY": TEST_SECRET,
        "DOORALERT_LOG_FORMAT": "json",
        **extra,
    }


async def _dooralert(settings: Settings, *args: str, **extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        cwd=REPO,
        env=_env(settings, **extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def stall_client(settings: Settings, js: object) -> AsyncIterator[httpx.AsyncClient]:
    """Intake with a 3 s stall limit, refreshing its pipeline report every 0.5 s."""
    fast = settings.model_copy(
        update={"pipeline_stall_seconds": 3.0, "pipeline_check_seconds": 0.5}
    )
    app = create_app(fast, directory=load_directory(EXAMPLES))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client


async def _post(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post(
        "/api/v1/encounters",
        json=report(),
        headers={"Authorization": f"Bearer {HAMLINE_KEY}", **headers},
    )


async def test_the_router_process_exits_within_seconds_when_its_consumer_is_paused(settings, js):
    proc = await _dooralert(settings, "router", DOORALERT_CONSUMER_CHECK_SECONDS="0.5")
    try:
        # Running: someone pulls from its consumer.
        await eventually(lambda: _waiting(js, "router"), timeout=20, every=0.2)
        paused_at = time.monotonic()
        await js.pause_consumer(STREAM, "router", FAR)
        code = await asyncio.wait_for(proc.wait(), timeout=10)
        took = time.monotonic() - paused_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == EXIT_DRIFT, code
    assert took < 5, took
    err = (await proc.stdout.read() + await proc.stderr.read()).decode()
    assert "consumers.drifted" in err and "consumer router is paused until" in err


async def _waiting(js, name: str) -> bool:
    return bool((await js.consumer_info(STREAM, name)).num_waiting)


async def test_the_router_refuses_to_start_when_a_consumer_was_deleted(settings, js):
    await js.delete_consumer("DOORALERT_TIMERS", "router-timers")
    broker = build_broker(settings, rules=load_rules(EXAMPLES), directory=load_directory(EXAMPLES))
    from faststream import FastStream

    code = await asyncio.wait_for(
        run_watched(FastStream(broker), broker, CONSUMERS, every=0.5), timeout=10
    )
    assert code == EXIT_DRIFT
    # Not silently recreated by the client library with its own settings.
    with pytest.raises(Exception, match="consumer not found"):
        await js.consumer_info("DOORALERT_TIMERS", "router-timers")


async def test_healthz_is_ok_while_router_and_notifier_consume(pipeline):
    async def ok():
        resp = await pipeline.client.get("/healthz")
        consumers = (resp.json().get("pipeline") or {}).get("consumers", {}).values()
        every_one = consumers and all(c["consuming"] for c in consumers)
        return resp if resp.status_code == 200 and every_one else None

    resp = await eventually(ok, timeout=15, every=0.2)
    body = resp.json()
    assert body["status"] == "ok" and body["nats"] is True
    consumers = body["pipeline"]["consumers"]
    assert set(consumers) == {"router", "router-followups", "router-timers", "notifier"}
    assert all(c["consuming"] for c in consumers.values()), consumers


async def test_healthz_turns_503_within_seconds_of_the_routers_consumer_being_paused(
    intake_client, js
):
    await js.pause_consumer(STREAM, "router", FAR)
    start = time.monotonic()
    assert (await _post(intake_client)).status_code == 202

    async def unhealthy():
        resp = await intake_client.get("/healthz")
        router = (resp.json().get("pipeline") or {}).get("consumers", {}).get("router", {})
        return resp if resp.status_code == 503 and router.get("num_pending") == 1 else None

    resp = await eventually(unhealthy, timeout=10, every=0.2)
    assert time.monotonic() - start < 10
    body = resp.json()
    assert body["status"] == "unhealthy"
    assert f"consumer router is paused until {FAR}" in body["pipeline"]["problems"]
    assert body["pipeline"]["consumers"]["router"]["num_pending"] == 1


async def test_healthz_names_a_report_left_waiting_when_no_router_runs(stall_client, js):
    assert (await _post(stall_client)).status_code == 202

    async def waited():
        body = (await stall_client.get("/healthz")).json()
        problems = (body.get("pipeline") or {}).get("problems", [])
        return [p for p in problems if "waited" in p and p.startswith("consumer router:")]

    (problem,) = await eventually(waited, timeout=10, every=0.2)
    assert "is the router running?" in problem
    resp = await stall_client.get("/healthz")
    assert resp.status_code == 503
    router = resp.json()["pipeline"]["consumers"]["router"]
    assert router["oldest_undelivered_seconds"] > 3 and router["num_pending"] == 1


async def test_a_report_accepted_during_a_stall_tells_staff_to_call_the_emergency_line(
    stall_client, js
):
    await js.pause_consumer(STREAM, "notifier", FAR)
    # Checked and found stalled: a 503 "pipeline not checked yet" (the first check still
    # running on a loaded machine) is not the stall this test is about.
    paused = "consumer notifier is paused"
    await eventually(lambda: _unhealthy(stall_client, paused), timeout=10, every=0.2)
    resp = await _post(stall_client)
    assert resp.status_code == 202
    body = resp.json()
    assert body["pipeline"] == "stalled"
    assert body["advice"] == "Alerts may be delayed: also call +1 555 0100 now."
    page = await stall_client.get(body["page_url"], headers={"Accept-Language": "es"})
    assert page.status_code == 200
    assert "Las alertas pueden retrasarse: llame también ahora al +1 555 0100." in page.text
    assert 'id="pipeline-advice"' in page.text


async def test_a_report_while_the_pipeline_flows_carries_no_advice(pipeline):
    await eventually(lambda: _status(pipeline.client, 200), timeout=15, every=0.2)
    body = (await pipeline.report(report())).json()
    assert "advice" not in body and "pipeline" not in body


async def _status(client: httpx.AsyncClient, code: int) -> bool:
    return (await client.get("/healthz")).status_code == code


async def _unhealthy(client: httpx.AsyncClient, problem: str) -> bool:
    """Checked and found stalled for `problem` (not "not checked yet", nor another cause)."""
    resp = await client.get("/healthz")
    problems = (resp.json().get("pipeline") or {}).get("problems", [])
    return resp.status_code == 503 and any(problem in p for p in problems)


async def _status_code(settings: Settings) -> tuple[int, str]:
    proc = await _dooralert(settings, "status")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_status_exits_0_when_healthy_1_when_paused_2_without_nats(pipeline, settings):
    js = pipeline.js
    await eventually(lambda: _waiting(js, "notifier"), timeout=15, every=0.2)
    code, out = await _status_code(settings)
    assert code == 0, out
    assert out.startswith("pipeline: healthy") and "router" in out and "notifier" in out
    await js.pause_consumer(STREAM, "notifier", FAR)
    code, out = await _status_code(settings)
    assert code == 1, out
    assert "pipeline: STALLED" in out and f"consumer notifier is paused until {FAR}" in out
    code, out = await _status_code(settings.model_copy(update={"nats_url": "nats://127.0.0.1:1"}))
    assert code == 2 and "cannot reach NATS" in out


async def test_the_intake_and_service_users_can_read_what_their_checks_need(tmp_path):
    """Under deploy/nats/server.conf: intake reads the whole pipeline (consumer info and the
    stored time of a waiting message), the router and notifier their own consumers."""
    from datetime import UTC, datetime

    import nats

    from services.eventlog import provision
    from services.eventlog.pipeline import PipelineMonitor, Thresholds
    from services.eventlog.watch import check_own
    from services.notifier.main import CONSUMERS as NOTIFIER_CONSUMERS
    from tests.integration.test_nats_permissions import ConfiguredNatsServer

    server = ConfiguredNatsServer(store=tmp_path / "nats")
    server.start()
    try:
        admin = await nats.connect(server.url_for("admin"))
        await provision(admin.jetstream())
        await admin.jetstream().publish("dooralert.s.i.encounter.reported", b"{}")
        intake = await nats.connect(server.url_for("intake"), inbox_prefix=inbox_prefix("intake"))
        monitor = PipelineMonitor(
            intake.jetstream(timeout=1.0), limits=Thresholds(), since=datetime.now(UTC)
        )
        report = await monitor.refresh(datetime.now(UTC))
        assert not [p for p in report.problems if "cannot read" in p], report.problems
        router = next(c for c in report.consumers if c.name == "router")
        assert router.num_pending == 1 and router.oldest_undelivered_seconds is not None
        for user, names in (("router", CONSUMERS), ("notifier", NOTIFIER_CONSUMERS)):
            nc = await nats.connect(server.url_for(user), inbox_prefix=inbox_prefix(user))
            assert await check_own(nc.jetstream(), names, timeout=1.0) == []
            await nc.close()
        await intake.close()
        await admin.close()
    finally:
        server.stop()


async def test_intake_stays_ready_while_the_pipeline_is_stalled(stall_client, js):
    await js.pause_consumer(STREAM, "router", FAR)
    await eventually(lambda: _status(stall_client, 503), timeout=10, every=0.2)
    ready = await stall_client.get("/readyz")
    assert ready.status_code == 200  # reports are still recorded: keep intake in service
