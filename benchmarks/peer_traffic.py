"""NATS traffic per report, per client connection (benchmarks/peer.py prints it).

nats-server runs with its monitoring port on 127.0.0.1 (`-m`); a snapshot is its /connz (each
client connection's message counters, by the name the service gives its connection, and each
subscription's delivered count) and /varz (the server's totals), plus each process's read and
write syscalls from /proc/<pid>/io (`syscr`, `syscw`: socket and file I/O alike; cheap, unlike
strace) and its user and kernel CPU time. The difference of two snapshots divided by the
reports in between is the table:

    sent      messages the client published (PUB/HPUB: events, JetStream API requests,
              pull requests, acks)
    received  messages the server delivered to it (MSG/HMSG: PubAcks and API replies, fetched
              log messages, status messages of pull requests)

Connections are matched by nats-server's connection id, so a connection made or lost in between
(a command, the hop breakdown's reader) is left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.eventlog import connection_options

# _INBOX.<nuid>[.<token>] and JetStream's ack subjects vary per message: one row each.
_INBOX = re.compile(r"^_INBOX\.[^.]+(\..*)?$")


def _subject_kind(subject: str) -> str:
    if _INBOX.match(subject):
        return "_INBOX.>"
    return subject


def proc_io(pid: int) -> tuple[int, int, float, float, int]:
    """(read syscalls, write syscalls, user CPU s, kernel CPU s, involuntary context switches)
    of a process so far (all its threads), from /proc/<pid>/io, stat and task/*/status."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tasks = [t.read_text() for t in Path(f"/proc/{pid}/task").glob("*/status")]
    except OSError:
        return 0, 0, 0.0, 0.0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    switches = sum(
        int(line.split(":", 1)[1])
        for status in tasks
        for line in status.splitlines()
        if line.startswith("nonvoluntary_ctxt_switches:")
    )
    tick = os.sysconf("SC_CLK_TCK")
    return (
        int(fields.get("syscr", 0)),
        int(fields.get("syscw", 0)),
        int(stat[11]) / tick,
        int(stat[12]) / tick,
        switches,
    )


async def snapshot(monitor: str, procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    """nats-server's counters (per connection id) and every process's syscalls, now."""
    async with httpx.AsyncClient(base_url=monitor, timeout=10.0) as client:
        connz = (await client.get("/connz", params={"limit": 4096, "subs": "detail"})).json()
        varz = (await client.get("/varz")).json()
    conns: dict[int, dict[str, Any]] = {}
    for c in connz.get("connections", []):
        subs: dict[str, int] = defaultdict(int)
        for s in c.get("subscriptions_list_detail") or []:
            subs[_subject_kind(s.get("subject", "?"))] += int(s.get("msgs", 0))
        conns[int(c["cid"])] = {
            "name": c.get("name") or f"cid {c['cid']}",
            "in_msgs": int(c.get("in_msgs", 0)),
            "out_msgs": int(c.get("out_msgs", 0)),
            "in_bytes": int(c.get("in_bytes", 0)),
            "out_bytes": int(c.get("out_bytes", 0)),
            "subs": dict(subs),
        }
    server = {k: int(varz.get(k, 0)) for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes")}
    return {"conns": conns, "server": server, "io": {n: proc_io(p.pid) for n, p in procs.items()}}


async def wait_connected(monitor: str, names: set[str], timeout: float = 60.0) -> set[str]:
    """Wait until nats-server lists a connection of each name (a service answers its health
    check before it has connected: the ledger, at nice 10, took seconds); the names missing
    at the timeout."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=monitor, timeout=10.0) as client:
        while True:
            connz = (await client.get("/connz", params={"limit": 4096})).json()
            missing = names - {c.get("name") for c in connz.get("connections", [])}
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.2)


def _service(name: str) -> str:
    """A connection or process name as its service: dooralert-notifier, notifier-2 -> notifier."""
    return name.removeprefix("dooralert-").split("-")[0] if name != "nats-server" else name


def per_report(before: dict[str, Any], after: dict[str, Any], reports: int) -> dict[str, Any]:
    """Messages and syscalls per report between two snapshots, per service (its connections
    and processes summed: notifier x2 is one row) and for the server."""
    n = max(1, reports)
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"connections": 0, "sent": 0.0, "received": 0.0, "subs": defaultdict(float)}
    )
    for cid, a in after["conns"].items():
        b = before["conns"].get(cid)
        if b is None or a["name"].startswith("bench"):
            continue  # made in between, or the benchmark's own (--subjects)
        row = rows[_service(a["name"])]
        row["connections"] += 1
        row["sent"] += (a["in_msgs"] - b["in_msgs"]) / n
        row["received"] += (a["out_msgs"] - b["out_msgs"]) / n
        for subject, msgs in a["subs"].items():
            got = msgs - b["subs"].get(subject, 0)
            if got:
                row["subs"][subject] += got / n
    for name, now in after["io"].items():
        was = before["io"].get(name, now)
        row = rows[_service(name)]
        for i, key in enumerate(("syscr", "syscw", "user_ms", "sys_ms", "preempted")):
            scale = 1000 if key.endswith("_ms") else 1
            row[key] = row.get(key, 0.0) + scale * (now[i] - was[i]) / n
    srv = {k: (after["server"][k] - before["server"][k]) / n for k in after["server"]}
    out = {k: {**v, "subs": dict(v["subs"])} for k, v in rows.items()}
    return {"reports": reports, "services": out, "server": srv}


def print_traffic(title: str, t: dict[str, Any] | None) -> None:
    """The per-report table (and the subjects each connection was delivered)."""
    if not t or not t.get("services"):
        return
    w = print
    w("")
    w(f"NATS traffic per report, {title} ({t['reports']} reports):")
    w(
        "| service (connections) | msgs sent | msgs received | read syscalls | write syscalls "
        "| CPU ms user + kernel | preempted |"
    )
    w("|---|---|---|---|---|---|---|")
    order = ["intake", "router", "notifier", "ledger", "nats-server"]
    names = sorted(t["services"], key=lambda k: (order.index(k) if k in order else 99, k))
    for name in names:
        r = t["services"][name]
        conns = f" ({r['connections']})" if r.get("connections", 0) > 1 else ""
        sent = f"{r['sent']:.1f}" if r.get("connections") else ""
        got = f"{r['received']:.1f}" if r.get("connections") else ""
        w(
            f"| {name}{conns} | {sent} | {got} | {r.get('syscr', 0):.1f} "
            f"| {r.get('syscw', 0):.1f} | {r.get('user_ms', 0):.1f} + {r.get('sys_ms', 0):.1f} "
            f"| {r.get('preempted', 0):.1f} |"
        )
    s = t["server"]
    w(f"  nats-server totals per report: {s['in_msgs']:.1f} msgs in, {s['out_msgs']:.1f} out")


# --- what the messages are (--subjects): an admin connection subscribed to everything ------

_HEX = re.compile(r"^[0-9A-Za-z]{16,}$")


def kind(msg: Msg) -> str:
    """One row per kind of message: events by type, API requests by verb and stream, acks by
    consumer, and what comes back to an inbox told apart by its content."""
    subject = msg.subject
    t = subject.split(".")
    if msg.reply.startswith("$JS.ACK."):
        # A message the server delivers to a consumer: it keeps its stored subject and goes
        # to the consumer's inbox (the ack subject names the stream and the consumer).
        r = msg.reply.split(".")
        consumer = "*" if _HEX.match(r[3]) else r[3]
        what = ".".join(t[3:]) if t[0] == "dooralert" and len(t) > 3 else ".".join(t[:2])
        return f"delivery {r[2]}/{consumer} {what}"
    if t[0] == "dooralert" and len(t) > 3:
        return "publish event " + ".".join(t[3:])
    if subject.startswith("$JS.ACK."):
        return f"ack {t[2]}/{t[3]} {(msg.data or b'+ACK')[:4].decode(errors='replace')}"
    if subject.startswith("$JS.EVENT."):
        # Advisories: the server publishes them only while someone listens (this counter).
        return "advisory (only because this counter listens)"
    if subject.startswith("$JS.API."):
        return "request " + _api(t[2:])
    if t[0] in ("$KV", "$O"):
        return f"publish {t[0]}.{t[1]}"
    if t[0] == "_INBOX":
        return "to inbox: " + _inbox_kind(msg)
    return "publish " + ".".join(t[:2])


def _api(rest: list[str]) -> str:
    """A JetStream API subject less its variable parts: the verb, the stream, the consumer
    (a throwaway consumer's random name as *), never a filter or a subject."""
    n = 3 if rest[1:2] == ["MSG"] else 2
    names = rest[n : n + (2 if rest[0] == "CONSUMER" else 1)]
    return ".".join([*rest[:n], *("*" if _HEX.match(x) else x for x in names)])


def _inbox_kind(msg: Msg) -> str:
    headers = msg.headers or {}
    status = headers.get("Status") or (msg.header or {}).get("Status")
    if status:
        return f"status {status}"
    if "Nats-Stream" in headers or "Nats-Sequence" in headers:
        return f"direct get reply {headers.get('Nats-Stream', '')}"
    data = msg.data or b""
    if data.startswith(b'{"stream"'):
        return "PubAck"
    if data.startswith(b"{"):
        try:
            body = json.loads(data)
        except ValueError:
            return "json reply"
        if isinstance(body, dict) and "type" in body:
            return str(body["type"]).removeprefix("io.nats.jetstream.api.v1.")
        return "PubAck" if isinstance(body, dict) and "seq" in body else "json reply"
    return "other reply"


class Subjects:
    """Counts every message in the account by kind while running (a load of its own: only for
    the sequential samples, never the burst)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._nc: Client | None = None

    async def start(self, admin_url: str) -> None:
        self._nc = await nats.connect(**connection_options(admin_url, name="bench-subjects"))

        async def count(msg: Msg) -> None:
            self.counts[kind(msg)] += 1

        await self._nc.subscribe(">", cb=count)
        await self._nc.flush()

    async def stop(self) -> dict[str, int]:
        if self._nc is not None:
            await self._nc.flush()
            await self._nc.close()
        return dict(self.counts)


def print_subjects(counts: dict[str, int] | None, reports: int) -> None:
    """The kinds of messages per report, most first."""
    if not counts:
        return
    print("")
    print(f"NATS messages per report by kind ({reports} sequential reports, all connections):")
    print("| kind | per report |")
    print("|---|---|")
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        if v / reports >= 0.05:
            print(f"| {k} | {v / max(1, reports):.2f} |")
