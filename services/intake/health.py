"""GET /healthz: whether this intake is connected to NATS."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from nats.aio.client import Client

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    nc: Client | None = getattr(request.app.state, "nats", None)
    ok = bool(nc and nc.is_connected)
    return JSONResponse({"status": "ok" if ok else "degraded", "nats": ok}, 200 if ok else 503)
