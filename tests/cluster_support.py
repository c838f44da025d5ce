"""A real 3-node nats-server JetStream cluster for tests: free loopback ports, temp stores,
each node stopped (or killed) by its own PID.

The nodes get the same settings as deploy/nats/cluster/node-*.conf (server name, client port,
cluster name and port, routes to every node, JetStream store), passed as command-line flags
so the ports can be chosen free at run time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors

from services.cli.dev import nats_server_binary
from services.eventlog import provision
from tests.support import free_ports

CLUSTER_NAME = "dooralert"


@dataclass
class ClusterNode:
    name: str
    store: Path
    port: int
    cluster_port: int
    monitor_port: int
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
            "--server_name",
            self.name,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store),
            "--cluster_name",
            CLUSTER_NAME,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(self.routes),
            "-m",
            str(self.monitor_port),
        ] + (["-l", str(self.log_file)] if self.log_file else [])

    def meta_cluster(self) -> dict:  # type: ignore[type-arg]
        """This node's view of the JetStream meta group (monitoring /jsz)."""
        url = f"http://127.0.0.1:{self.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read()).get("meta_cluster") or {}

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

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
        ports = free_ports(3 * size)
        client, cluster, monitor = ports[:size], ports[size : 2 * size], ports[2 * size :]
        routes = [f"nats://127.0.0.1:{p}" for p in cluster]
        self.nodes = [
            ClusterNode(
                name=f"n{i + 1}",
                store=root / f"n{i + 1}",
                port=client[i],
                cluster_port=cluster[i],
                monitor_port=monitor[i],
                routes=[r for j, r in enumerate(routes) if j != i],
                log_file=root / f"n{i + 1}.log",
            )
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
                        raise RuntimeError(f"nats-server {n.name} exited: {n.log_file}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nats-server {n.name} did not start") from None
                    time.sleep(0.02)

    def _meta_ready(self) -> bool:
        running = [n for n in self.nodes if n.running]
        views = {n.name: n.meta_cluster() for n in running}
        leaders = {v.get("leader") for v in views.values()}
        if len(leaders) != 1 or None in leaders or leaders - set(views):
            return False
        (leader,) = leaders
        peers = views[leader].get("replicas") or []  # the leader lists the others
        return views[leader].get("cluster_size") == len(self.nodes) and {
            p["name"] for p in peers if p.get("current")
        } == set(views) - {leader}

    async def wait_for_meta_leader(self, timeout: float = 20.0) -> None:
        """Until every running node agrees on a JetStream meta leader and that leader has every
        other running node as a current peer: before that, creating an R3 stream can fail with
        "no suitable peers for placement"."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await asyncio.to_thread(self._meta_ready):
                    return
            except OSError:
                pass  # monitoring port not up yet
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "JetStream cluster formed no meta leader: "
                    + ", ".join(str(n.log_file) for n in self.nodes)
                )
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


async def provision_replicated(nc: Any, *, within: float = 60.0) -> list[str]:
    """`provision(replicas=3)` on a cluster that has just formed. Creating an R3 stream there
    can outlast the client's default 5 s API timeout on a loaded 2-core machine (CI saw one,
    right after `wait_for_meta_leader`): each API request may take 30 s here, and a timeout is
    asked again (provisioning is idempotent) until `within` seconds have passed."""
    js = nc.jetstream(timeout=30.0)
    deadline = time.monotonic() + within
    while True:
        try:
            return await provision(js, replicas=3)
        except nats.errors.TimeoutError:
            if time.monotonic() > deadline:
                raise


async def stream_leader(js: Any, stream: str) -> str | None:
    return (await js.stream_info(stream)).cluster.leader


async def move_leaders_off(nc: Any, node: str, *, keep: str, timeout: float = 20.0) -> list[str]:
    """Step down every stream and durable-consumer leader on `node` except stream `keep`'s,
    until none is led there: killing `node` then loses `keep`'s leader and nothing else.
    Returns what was moved."""
    js = nc.jetstream()
    moved: list[str] = []
    deadline = time.monotonic() + timeout
    for stream in await js.streams_info():
        name = stream.config.name
        groups: list[tuple[str, str]] = []
        if name != keep:
            groups.append((f"stream {name}", f"$JS.API.STREAM.LEADER.STEPDOWN.{name}"))
        for c in await js.consumers_info(name):
            if c.config.durable_name:
                groups.append(
                    (
                        f"consumer {name}/{c.name}",
                        f"$JS.API.CONSUMER.LEADER.STEPDOWN.{name}.{c.name}",
                    )
                )
        for label, subject in groups:

            async def leader(label: str = label, name: str = name) -> str | None:
                if label.startswith("stream"):
                    return await stream_leader(js, name)
                info = await js.consumer_info(name, label.rsplit("/", 1)[1])
                return info.cluster.leader if info.cluster else None

            while (current := await leader()) in (node, None):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label} still led by {current}")
                if current == node:
                    try:
                        await nc.request(subject, b"", timeout=2)
                    except Exception:  # noqa: BLE001 - asked again below if it did not move
                        pass
                    if label not in moved:
                        moved.append(label)
                await asyncio.sleep(0.2)
    return moved
