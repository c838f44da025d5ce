"""A service's health port (DOORALERT_METRICS_HOST:DOORALERT_METRICS_PORT, never published):
`GET /livez` (the event loop answers; never asks NATS), `GET /readyz` (the service's own
readiness checks, 503 with the failing ones) and `GET /metrics` (Prometheus text format).

A tiny HTTP/1.0 server on the service's own event loop, on purpose: a loop blocked by a bug
stops answering /livez, so the liveness probe restarts the process; a thread would answer on.
Readiness is a plain function over state the service keeps current: a probe never waits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.runtime.logging import get_logger
from services.runtime.metrics import READY

log = get_logger("dooralert.health")

# Each check: a name and whether it passes now (cheap, never blocking).
Checks = Callable[[], Mapping[str, bool]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """Serves /livez, /readyz and /metrics for one service until `close`."""

    def __init__(self, service: str, *, host: str, port: int, checks: Checks) -> None:
        self.service, self.host, self.port, self.checks = service, host, port, checks
        self._server: asyncio.Server | None = None
        READY.labels(service).set_function(lambda: float(self.ready()[0]))

    def ready(self) -> tuple[bool, dict[str, bool]]:
        """Whether every readiness check passes, and each check's result."""
        try:
            results = dict(self.checks())
        except Exception:  # a broken check means not ready, never a 500
            log.exception("health.check_failed", service=self.service)
            return False, {"checks": False}
        return all(results.values()), results

    async def start(self) -> None:
        """Listen (port 0 disables the server). A busy port is logged, not fatal: a service
        that cannot expose metrics must still deliver alerts."""
        if self.port == 0:
            return
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            log.error("health.unavailable", service=self.service, port=self.port, error=str(exc))
            return
        log.info("health.listening", service=self.service, host=self.host, port=self.port)

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """The status, content type and body for a request."""
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        if path == "/livez":
            return 200, "application/json", b'{"status":"alive"}'
        if path == "/readyz":
            ok, results = self.ready()
            body = {"status": "ready" if ok else "not ready", "checks": results}
            return (200 if ok else 503), "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest()
        return 404, "text/plain", b"not found: /livez, /readyz, /metrics\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            parts = line.decode("latin-1").split()
            # Headers are not needed; read them (bounded) so the client sees a clean close.
            for _ in range(100):
                header = await asyncio.wait_for(reader.readline(), timeout=5.0)
                if header in (b"\r\n", b"\n", b""):
                    break
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            status, ctype, body = self.answer(method, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
