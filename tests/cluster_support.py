"""A real 3-node nats-server JetStream cluster for tests: free loopback ports, temp stores,
each node stopped (or killed) by its own PID.

The nodes get the same settings as deploy/nats/cluster/node-*.conf (server name, client port,
cluster name and port, routes to every node, JetStream store), passed as command-line flags
so the ports can be chosen free at run time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats

from services.common.dev import nats_server_binary
from tests.support import free_ports

CLUSTER_NAME = "dooralert"


@dataclass
class ClusterNode:
    name: str
    store: Path
    port: int
    cluster_port: int
    routes: list[str] = field(default_factory=list)
    log_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [
            nats_server_binary(),
            "--server_name", self.name,
            "-a", "127.0.0.1", "-p", str(self.port),
            "-js", "-sd", str(self.store),
            "--cluster_name", CLUSTER_NAME,
            "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
            "--routes", ",".join(self.routes),
        ] + (["-l", str(self.log_file)] if self.log_file else [])

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL, by PID: no clean shutdown, no leadership hand-off."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class NatsCluster:
    """Three JetStream nodes routed to each other, named n1..n3."""

    def __init__(self, root: Path, size: int = 3) -> None:
        ports = free_ports(2 * size)
        client, cluster = ports[:size], ports[size:]
        routes = [f"nats://127.0.0.1:{p}" for p in cluster]
        self.nodes = [
            ClusterNode(name=f"n{i + 1}", store=root / f"n{i + 1}", port=client[i],
                        cluster_port=cluster[i],
                        routes=[r for j, r in enumerate(routes) if j != i],
                        log_file=root / f"n{i + 1}.log")
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """All nodes, comma-separated: the form DOORALERT_NATS_URL takes."""
        return ",".join(self.urls)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        deadline = time.monotonic() + 15
        for n in self.nodes:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", n.port), timeout=0.2):
                        break
                except OSError:
                    if not n.running:
                        raise RuntimeError(f"nats-server {n.name} exited: {n.log_file}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nats-server {n.name} did not start") from None
                    time.sleep(0.02)

    async def wait_for_meta_leader(self, timeout: float = 20.0) -> None:
        """Until JetStream answers account info on every running node (it needs a meta leader
        and the node's view of the JetStream cluster)."""
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            if not n.running:
                continue
            nc = await nats.connect(n.url, connect_timeout=2, max_reconnect_attempts=-1)
            try:
                js = nc.jetstream(timeout=1.0)
                while True:
                    try:
                        await js.account_info()
                        break
                    except Exception:  # noqa: BLE001 - no meta leader yet
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.1)
            finally:
                await nc.close()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
