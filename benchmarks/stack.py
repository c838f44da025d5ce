"""dooralert as production runs it, one process at a time: nats-server with the deployment's
users (deploy/nats/server.conf, a generated password each, as `dooralert dev` runs it),
`dooralert provision` as admin, and each service (router, notifier, intake, ledger) its own
process as its own NATS user, each started, timed to ready and stopped on its own.

benchmarks/peer_parts.py starts the same processes all at once; this module is for a benchmark
that restarts them one by one (benchmarks/flat_log.py). Servers listen on 127.0.0.1 and are
stopped by PID.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import pipeline as pl
from services.cli import devnats
from services.cli.dev import log_key, nats_server_binary

HOST = pl.HOST
CLI = [sys.executable, "-m", "services.cli.main"]
# name -> (command, NATS user)
SERVICES: dict[str, tuple[list[str], str]] = {
    "router": (["router"], "router"),
    "notifier": (["notifier"], "notifier"),
    "intake": (["intake"], "intake"),
    "ledger": (["audit", "serve"], "ledger"),
}


@dataclass
class Stack:
    """The processes of one dooralert deployment in `work` (config in `work/config`)."""

    work: Path
    smtp_port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=pl.free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    server: devnats.DevNats | None = None
    nats: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """intake's base URL."""
        return f"http://{HOST}:{self.http_port}"

    def url_for(self, user: str) -> str:
        """The NATS URL of `user` (admin for the benchmark's own reads and writes)."""
        assert self.server is not None
        return self.server.url_for(user)

    def start_nats(self) -> None:
        """nats-server with the deployment's users, then `dooralert provision` as admin."""
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        config = self.work / "config"
        log_key(self.work, config)
        self.server = devnats.prepare(self.work, host=HOST, port=pl.free_port())
        self.env = devnats.without_nats_passwords(
            {
                **os.environ,
                "DOORALERT_CONFIG_DIR": str(config),
                "DOORALERT_SMTP_HOST": HOST,
                "DOORALERT_SMTP_PORT": str(self.smtp_port),
                "DOORALERT_HTTP_HOST": HOST,
                "DOORALERT_HTTP_PORT": str(self.http_port),
                "DOORALERT_SECRET_KEYS": self.secret_key,
                "DOORALERT_LOG_FORMAT": "json",
                "DOORALERT_LOG_KEY_FILE": str(self.work / "log.key"),
                "DOORALERT_CHECKPOINT_DIR": str(self.work / "checkpoints"),
                # The benchmark's samples come from one address: intake's abuse limits off.
                "DOORALERT_RATE_LIMIT_REPORTS_PER_MINUTE": "0",
                "DOORALERT_RATE_LIMIT_SCHOOL_PER_MINUTE": "0",
                "DOORALERT_RATE_LIMIT_CLIENT_PER_MINUTE": "0",
                **self.extra_env,
            }
        )
        argv = self.server.server_args(nats_server_binary(), self.work / "nats")
        self.nats = pl.spawn(
            "nats-server",
            argv,
            env=self.server.server_env(self.env),
            log_path=logs / "nats-server.log",
        )
        pl.wait_for_port(self.server.port, 15)
        with open(logs / "provision.log", "ab") as out:
            subprocess.run(
                [*CLI, "provision"],
                env={**self.env, "DOORALERT_NATS_URL": self.url_for("admin")},
                cwd=pl.REPO,
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service (its own health port, its own NATS user)."""
        cmd, user = SERVICES[name]
        port = pl.free_port()
        self.health_ports[name] = port
        env = {
            **self.env,
            "DOORALERT_NATS_URL": self.url_for(user),
            "DOORALERT_METRICS_PORT": str(port),
        }
        log_path = self.work / "logs" / f"{name}.log"
        self.procs[name] = pl.spawn(name, [*CLI, *cmd], env=env, log_path=log_path)
        return self.procs[name]

    def stop(self, name: str) -> None:
        """SIGTERM one service by PID and wait for it (a clean stop: the ledger signs)."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pl._children[:] = [(n, p) for n, p in pl._children if p is not proc]

    def stop_services(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def ready_url(self, name: str) -> str:
        if name == "intake":
            return f"{self.base}/readyz"
        return f"http://{HOST}:{self.health_ports[name]}/readyz"

    async def wait_ready(self, name: str, *, since: float, timeout: float = 120) -> float:
        """Seconds from `since` (time.monotonic) until the service's /readyz answers 200."""
        proc, url = self.procs[name], self.ready_url(name)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.work}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return time.monotonic() - since
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.01)
        raise RuntimeError(f"{name} not ready after {timeout}s; see {self.work}/logs")

    async def start_timed(self, name: str) -> float:
        """Start `name`; seconds from process start to ready."""
        t0 = time.monotonic()
        self.start(name)
        return await self.wait_ready(name, since=t0)

    async def metric(self, name: str, metric: str) -> float | None:
        """One unlabelled gauge of a service's /metrics, or None."""
        url = f"http://{HOST}:{self.health_ports[name]}/metrics"
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                text = (await client.get(url)).text
        except httpx.HTTPError:
            return None
        found = re.search(rf"^{re.escape(metric)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None


async def post_report(client: httpx.AsyncClient, school: str, key: str, i: int) -> dict[str, Any]:
    """One report as staff send it; intake's answer (incident id, status and page links)."""
    r = await client.post(
        "/api/v1/encounters",
        json=pl.report_body(school, i),
        headers={"Authorization": f"Bearer {key}"},
    )
    if r.status_code != 202:
        raise RuntimeError(f"report refused: {r.status_code} {r.text[:200]}")
    got: dict[str, Any] = r.json()
    return got
