"""Intake's metrics: reports accepted and refused (by reason, from the answer's status), and
its health port (/livez, /readyz, /metrics on DOORALERT_METRICS_PORT, never on the published
HTTP port: metrics say when and how often reports come in)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.healthserver import HealthServer
from services.runtime.metrics import NATS_CONNECTED, REPORTS_ACCEPTED, REPORTS_REFUSED
from services.runtime.settings import Settings

REPORT_PATHS = {"/api/v1/encounters": "api", "/report": "form"}
# Why a report was refused, from the status it was answered with (nothing was recorded).
REASONS = {
    400: "stale_form",
    401: "unauthenticated",
    403: "forbidden",
    409: "idempotency_key_reused",
    413: "too_large",
    415: "bad_content_type",
    422: "invalid",
    429: "rate_limited",
    503: "log_unavailable",
}


def refusal_reason(status: int) -> str | None:
    """The refusal reason for a report answered with `status`; None when it was recorded."""
    if status < 400:
        return None
    return REASONS.get(status, "error" if status >= 500 else f"http_{status}")


class CountReports:
    """Counts each POSTed report by the status it was answered with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        via = REPORT_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if via is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        counted = False

        async def counting(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                count(via, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        except Exception:
            if not counted:
                count(via, 500)
            raise


def count(via: str, status: int) -> None:
    """Count one report answered with `status`."""
    reason = refusal_reason(status)
    if reason is None:
        REPORTS_ACCEPTED.labels(via).inc()
    else:
        REPORTS_REFUSED.labels(via, reason).inc()


def health_server(settings: Settings, *, connected: Callable[[], bool]) -> HealthServer:
    """Intake's health port; `connected` says whether it holds its NATS connection."""
    NATS_CONNECTED.labels("intake").set_function(lambda: float(bool(connected())))
    return HealthServer(
        "intake",
        host=settings.metrics_host,
        port=settings.metrics_port,
        checks=lambda: {"nats": bool(connected())},
    )
