"""The health port every service serves (/livez, /readyz, /metrics) and what intake counts."""

from __future__ import annotations

import asyncio

import httpx

from services.intake.metering import count, refusal_reason
from services.runtime.healthserver import HealthServer
from services.runtime.metrics import REPORTS_REFUSED
from tests.support import free_port


async def _get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        return await client.get(path)


async def test_livez_answers_while_readyz_names_the_failing_check() -> None:
    state = {"nats": False, "smtp": True}
    port = free_port()
    server = HealthServer("notifier", host="127.0.0.1", port=port, checks=lambda: state)
    await server.start()
    try:
        assert (await _get(port, "/livez")).status_code == 200
        down = await _get(port, "/readyz")
        assert down.status_code == 503
        assert down.json() == {"status": "not ready", "checks": {"nats": False, "smtp": True}}
        state["nats"] = True
        assert (await _get(port, "/readyz")).status_code == 200
        metrics = await _get(port, "/metrics")
        assert metrics.status_code == 200
        assert 'dooralert_ready{service="notifier"} 1.0' in metrics.text
        assert (await _get(port, "/anything")).status_code == 404
    finally:
        await server.close()


async def test_a_broken_readiness_check_is_not_ready_rather_than_an_error() -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("bug")

    port = free_port()
    server = HealthServer("router", host="127.0.0.1", port=port, checks=broken)
    await server.start()
    try:
        assert (await _get(port, "/readyz")).status_code == 503
        assert (await _get(port, "/livez")).status_code == 200
    finally:
        await server.close()


async def test_a_busy_metrics_port_does_not_stop_the_service() -> None:
    port = free_port()
    first = HealthServer("router", host="127.0.0.1", port=port, checks=dict)
    second = HealthServer("notifier", host="127.0.0.1", port=port, checks=dict)
    await first.start()
    try:
        await asyncio.wait_for(second.start(), timeout=2)  # logged, not raised
        assert (await _get(port, "/livez")).status_code == 200
    finally:
        await second.close()
        await first.close()


def test_report_refusals_are_counted_by_reason_and_acceptances_are_not_refusals() -> None:
    assert refusal_reason(202) is None and refusal_reason(303) is None
    assert refusal_reason(401) == "unauthenticated"
    assert refusal_reason(422) == "invalid"
    assert refusal_reason(429) == "rate_limited"
    assert refusal_reason(503) == "log_unavailable"
    assert refusal_reason(500) == "error"
    before = REPORTS_REFUSED.labels("api", "rate_limited")._value.get()
    count("api", 429)
    assert REPORTS_REFUSED.labels("api", "rate_limited")._value.get() == before + 1
