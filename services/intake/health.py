"""GET /healthz: the pipeline's health, not only this process's. Healthy when intake is
connected to NATS and the router's and notifier's consumers are present, unpaused, keep the
contract, are being pulled from and have nothing waiting too long (services/eventlog/pipeline.py).
Answered from a report refreshed in the background: a request never waits for NATS."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.domain.i18n import text
from services.eventlog.pipeline import PipelineHealth, PipelineMonitor, Thresholds
from services.runtime.settings import Settings

router = APIRouter()


def start_monitor(app: FastAPI, js: JetStreamContext, settings: Settings) -> PipelineMonitor:
    """Watch the pipeline for the app's life (stop it with `close`)."""
    monitor = PipelineMonitor(
        js,
        limits=Thresholds(stall=settings.pipeline_stall_seconds, unacked=settings.unacked_limit()),
        since=datetime.now(UTC),
    )
    monitor.start(settings.pipeline_check_seconds)
    app.state.pipeline = monitor
    return monitor


def _report(request: Request) -> tuple[PipelineMonitor | None, PipelineHealth | None]:
    monitor: PipelineMonitor | None = getattr(request.app.state, "pipeline", None)
    if monitor is None:
        return None, None
    settings: Settings = request.app.state.intake.settings
    # A report older than a few refreshes means the checks themselves are stuck.
    max_age = 3 * settings.pipeline_check_seconds + 2.0
    return monitor, monitor.current(datetime.now(UTC), max_age=max_age)


def stalled(request: Request) -> bool:
    """Whether the pipeline is known to be stalled now (never waits; unknown is not stalled,
    but a report that stopped refreshing is)."""
    monitor, report = _report(request)
    if monitor is None or monitor.latest is None:
        return False
    return report is None or not report.healthy


def advice(request: Request, phone: str | None, language: str) -> dict[str, str]:
    """The fields a report accepted during a stall carries: what to do besides waiting."""
    if not stalled(request):
        return {}
    number = phone or text("form.law_department", language)
    return {"pipeline": "stalled", "advice": text("pipeline.advice", language, phone=number)}


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    nc: Client | None = getattr(request.app.state, "nats", None)
    connected = bool(nc and nc.is_connected)
    monitor, report = _report(request)
    if monitor is None:  # no NATS of its own (tests with a fake event log)
        status = "ok" if connected else "degraded"
        return JSONResponse({"status": status, "nats": connected}, 200 if connected else 503)
    body: dict[str, object] = {"nats": connected}
    if report is None:
        body |= {"status": "unknown", "pipeline": None, "problems": ["pipeline not checked yet"]}
        return JSONResponse(body, 503)
    ok = connected and report.healthy
    body |= {"status": "ok" if ok else "unhealthy", "pipeline": report.as_json()}
    return JSONResponse(body, 200 if ok else 503)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Whether this intake can record reports (connected to NATS): the readiness probe.
    Not the pipeline: a stalled router must not take intake out of service, since reports
    are still stored (and answered with the emergency-line advice)."""
    nc: Client | None = getattr(request.app.state, "nats", None)
    ready = bool(nc and nc.is_connected) or getattr(request.app.state, "given_event_log", None)
    return JSONResponse({"status": "ready" if ready else "not ready"}, 200 if ready else 503)
