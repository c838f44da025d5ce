"""Fuzzing the intake API from its own OpenAPI document (schemathesis): no input gets a 5xx.

The app runs under uvicorn on a real nats-server; every generated request is sent with a valid
Bearer key, so the examples reach the handlers rather than stopping at 401.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from services.domain.directory import load_directory
from services.eventlog import connect, provision
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, TEST_SECRET, NatsServer, free_port, report

schemathesis = pytest.importorskip("schemathesis")

MAX_EXAMPLES = 50


def serve(tmp: Path) -> Iterator[str]:
    import uvicorn

    from services.intake.app import create_app

    nats = NatsServer(store=tmp / "nats")
    nats.start()
    port = free_port()
    settings = Settings(
        nats_url=nats.url,
        config_dir=EXAMPLES,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=port,
        publish_retry_seconds=1.0,
    )
    started, stop = threading.Event(), threading.Event()

    async def run() -> None:
        nc = await connect(nats.url, name="fuzz")
        await provision(nc.jetstream())
        await nc.close()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, directory=load_directory(EXAMPLES)),
                host="127.0.0.1",
                port=port,
                log_level="warning",
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

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(10)
        nats.stop()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def incident(base: str) -> str:
    resp = httpx.post(
        f"{base}/api/v1/encounters",
        json=report(),
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        timeout=10,
    )
    assert resp.status_code == 202
    return str(resp.json()["incident_id"])


def _operations(base: str) -> list[tuple[str, str]]:
    doc = httpx.get(f"{base}/openapi.json", timeout=10).json()
    return [
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        if path.startswith("/api/")
        for method in ops
    ]


def test_api_operations_declare_request_bodies(base: str) -> None:
    doc = httpx.get(f"{base}/openapi.json", timeout=10).json()
    for path in (
        "/api/v1/encounters",
        "/api/v1/incidents/{incident_id}/updates",
        "/api/v1/incidents/{incident_id}/ack",
    ):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["properties"], path
    assert "agency_stated" in str(doc["paths"]["/api/v1/encounters"])


def test_no_generated_request_gets_a_server_error(base: str, incident: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    calls: list[int] = []
    ops = _operations(base)
    assert len(ops) >= 5
    for method, path in ops:
        operation = schema[path][method]
        strategy = operation.as_strategy()

        @hsettings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @_given(strategy)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            if (
                case.path_parameters
                and "incident_id" in case.path_parameters
                and case.path_parameters["incident_id"] == ""
            ):
                return
            # Half the cases aim at a real incident, so the handlers past the look-up run.
            if case.path_parameters and hash(repr(case.body)) % 2 == 0:
                case.path_parameters["incident_id"] = incident
            resp = case.call(
                base_url=base, headers={"Authorization": f"Bearer {HAMLINE_KEY}"}, timeout=10
            )
            calls.append(resp.status_code)
            if resp.status_code >= 500:
                failures.append(
                    # check() runs within this iteration, so the loop variables are current.
                    f"{method} {path} -> {resp.status_code}: {resp.text[:200]} "  # noqa: B023
                    f"body={case.body!r:.200}"
                )

        check()
    assert failures == []
    assert len(calls) >= 3 * len(ops) and 202 in calls, sorted(set(calls))


def _given(strategy):  # type: ignore[no-untyped-def]
    from hypothesis import given

    return given(strategy)
