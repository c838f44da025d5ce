"""The peer benchmark's parts: the SMTP sink's reader, the generated district, both systems'
processes, one sample, one burst and the SMTP server's own limit (benchmarks/peer.py runs them)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import yaml

from benchmarks import peer_traffic
from benchmarks import pipeline as pl
from services.cli import devnats
from services.cli.dev import log_key, nats_server_binary
from services.domain.directory import hash_intake_key, load_directory

HOST = pl.HOST
EXAMPLES = pl.CONFIG_DIR
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
EMAILS = 4  # first-tier emails per report / alert


# --- the SMTP sink, its own process ------------------------------------------------------


class Sink:
    """benchmarks/smtp_sink.py's accept times by key (incident id or alert name)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        self.times: dict[str, list[float]] = defaultdict(list)
        self.total = 0
        self.peers: set[str] = set()
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, key, peer = line.split()
            self.times[key].append(float(t))
            self.peers.add(peer)
            self.total += 1

    def count(self, key: str) -> int:
        return len(self.times.get(key, ()))

    def nth(self, key: str, n: int) -> float:
        return sorted(self.times[key])[n - 1]

    async def wait(self, keys: list[str], n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.count(k) >= n for k in keys):
                return True
            await asyncio.sleep(0.002 if len(keys) == 1 else 0.05)
        return False

    def duplicates(self, n: int) -> int:
        return sum(1 for k, v in self.times.items() if k != "-" and len(v) > n)


def start_sink(work: Path, rtt_ms: float = 0.0) -> Sink:
    """benchmarks/smtp_sink.py on a free port; `rtt_ms` > 0: each reply that many ms late."""
    port = pl.free_port()
    argv = [sys.executable, str(Path(__file__).with_name("smtp_sink.py")), "--port", str(port)]
    if rtt_ms > 0:
        argv += ["--rtt", str(rtt_ms)]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(work / "logs" / "smtp-sink.log", "ab"),  # noqa: SIM115 - lives as long as the child
        text=True,
        start_new_session=True,
    )
    pl._children.append(("smtp-sink", proc))  # type: ignore[arg-type]  # stopped by PID with the rest
    return Sink(proc, port)


# --- the generated district --------------------------------------------------------------


def make_district(dest: Path, schools: int) -> dict[str, str]:
    """The example district with `schools` schools, each its own key and principal."""
    dest.mkdir(parents=True)
    for name in ("rules.yaml", "protocol.yaml"):
        shutil.copy(EXAMPLES / name, dest / name)
    district = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    keep = {"law-dept", "law-counsel", "safety-office", "chief-of-schools"}
    contacts = [c for c in district["contacts"] if c["id"] in keep]
    keys: dict[str, str] = {}
    district["schools"] = []
    for i in range(schools):
        sid, pid = f"school-{i:03d}", f"principal-{i:03d}"
        keys[sid] = secrets.token_urlsafe(24)
        contacts.append(
            {
                "id": pid,
                "name": f"Principal, School {i:03d}",
                "channels": [{"type": "email", "address": f"principal@{sid}.district.example"}],
                "backups": ["chief-of-schools"],
            }
        )
        district["schools"].append(
            {
                "id": sid,
                "name": f"School {i:03d}",
                "intake_key_hashes": [hash_intake_key(keys[sid])],
                "roles": {"principal": [pid]},
            }
        )
    district["contacts"] = contacts
    (dest / "district.yaml").write_text(yaml.safe_dump(district, sort_keys=False))
    load_directory(dest)  # fails loudly if the generated file is not a valid directory
    return keys


# --- the systems -------------------------------------------------------------------------


async def start_dooralert(
    args: argparse.Namespace, work: Path, smtp_port: int
) -> tuple[str, dict[str, subprocess.Popen[bytes]], str, str]:
    """nats-server with users, provision as admin, then each service as its own user; the
    intake's base URL, the processes, the admin's NATS URL (to read the log back) and
    nats-server's monitoring URL (its message counters: benchmarks/peer_traffic.py)."""
    base, procs, admin, monitor = await asyncio.to_thread(launch_dooralert, args, work, smtp_port)
    await pl.wait_healthz(base, list(procs.items()), 60)
    return base, procs, admin, monitor


def launch_dooralert(
    args: argparse.Namespace, work: Path, smtp_port: int
) -> tuple[str, dict[str, subprocess.Popen[bytes]], str, str]:
    """Start the processes (start_dooralert waits for them)."""
    server = devnats.prepare(work, host=HOST, port=pl.free_port())
    monitor_port = pl.free_port()
    http_port = pl.free_port()
    logs = work / "logs"
    config = work / "config"
    log_key(work, config)
    env = devnats.without_nats_passwords(
        {
            **os.environ,
            "DOORALERT_CONFIG_DIR": str(config),
            "DOORALERT_SMTP_HOST": HOST,
            "DOORALERT_SMTP_PORT": str(smtp_port),
            "DOORALERT_HTTP_HOST": HOST,
            "DOORALERT_HTTP_PORT": str(http_port),
            "DOORALERT_SECRET_KEYS": secrets.token_urlsafe(48),
            "DOORALERT_LOG_FORMAT": "json",
            "DOORALERT_LOG_KEY_FILE": str(work / "log.key"),
            "DOORALERT_CHECKPOINT_DIR": str(work / "checkpoints"),
            # A burst from 600 schools at one client address, far beyond what staff send:
            # intake's abuse limits are off so the benchmark measures the pipeline.
            "DOORALERT_RATE_LIMIT_REPORTS_PER_MINUTE": "0",
            "DOORALERT_RATE_LIMIT_SCHOOL_PER_MINUTE": "0",
            "DOORALERT_RATE_LIMIT_CLIENT_PER_MINUTE": "0",
        }
    )
    # The monitoring port listens on the server's address (-a 127.0.0.1), like the clients'.
    argv = [*server.server_args(nats_server_binary(), work / "nats"), "-m", str(monitor_port)]
    nats_proc = pl.spawn(
        "nats-server",
        argv,
        env=server.server_env(env, go_procs=args.nats_go_procs),
        log_path=logs / "nats-server.log",
    )
    pl.wait_for_port(server.port, 15)

    def as_user(user: str) -> dict[str, str]:
        return {**env, "DOORALERT_NATS_URL": server.url_for(user)}

    cli = [sys.executable, "-m", "services.cli.main"]
    subprocess.run(
        [*cli, "provision"],
        env=as_user("admin"),
        cwd=pl.REPO,
        check=True,
        stdout=open(logs / "provision.log", "ab"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    layout = [("router", ["router"], "router")]
    layout += [(f"notifier-{i + 1}", ["notifier"], "notifier") for i in range(args.notifiers)]
    layout += [("intake", ["intake"], "intake"), ("ledger", ["audit", "serve"], "ledger")]
    for name, cmd, user in layout:
        # Each process its own health/metrics port, as a district runs them on one machine.
        env_p = {**as_user(user), "DOORALERT_METRICS_PORT": str(pl.free_port())}
        # The recommended layout (deploy/README.md): the ledger, whose anchoring is due within
        # 10 s, at a lower CPU priority than the alert path (`nice` execs: the same PID).
        niceness = dict(getattr(args, "nice", None) or []).get(name.split("-")[0], 0)
        if name == "ledger":
            niceness = args.ledger_nice
        nice = ["nice", "-n", str(niceness)] if niceness else []
        argv = [*nice, *cli, *cmd]
        procs[name] = pl.spawn(name, argv, env=env_p, log_path=logs / f"{name}.log")
    # Last, so the services come first in the CPU table; Alertmanager has no broker to count.
    procs["nats-server"] = nats_proc
    monitor = f"http://{HOST}:{monitor_port}"
    return f"http://{HOST}:{http_port}", procs, server.url_for("admin"), monitor


def alertmanager_skip_reason() -> str | None:
    """Why Alertmanager cannot run here (after installing it when missing and root), or None."""
    if os.path.exists(ALERTMANAGER):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{ALERTMANAGER} missing; install Debian's prometheus-alertmanager (as root)"
    print("bench: installing prometheus-alertmanager with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    got = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "prometheus-alertmanager"],
        env=env,
        capture_output=True,
        text=True,
    )
    if got.returncode != 0 or not os.path.exists(ALERTMANAGER):
        return f"apt-get install prometheus-alertmanager failed: {got.stderr.strip()[-300:]}"
    return None


def alertmanager_config(smtp_port: int) -> dict[str, Any]:
    emails = [
        "law-oncall@district.example",
        "deputy-counsel@district.example",
        "safety-desk@district.example",
        "principal@school.district.example",
    ]
    return {
        "global": {
            "smtp_smarthost": f"{HOST}:{smtp_port}",
            "smtp_from": "alertmanager@bench.invalid",
            "smtp_require_tls": False,
        },
        "route": {
            "receiver": "district",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "5m",
            "repeat_interval": "24h",
        },
        "receivers": [
            {
                "name": "district",
                "email_configs": [
                    {"to": to, "headers": {"X-Bench-Alert": "{{ .GroupLabels.alertname }}"}}
                    for to in emails
                ],
            }
        ],
    }


async def start_alertmanager(
    work: Path, smtp_port: int
) -> tuple[str | None, subprocess.Popen[bytes] | None, str | None]:
    """Alertmanager on a free port with its own storage, or the reason it was skipped."""
    reason = alertmanager_skip_reason()
    if reason:
        print(f"bench: Alertmanager skipped: {reason}", file=sys.stderr)
        return None, None, reason
    cfg = work / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(alertmanager_config(smtp_port)))
    port = pl.free_port()
    argv = [
        ALERTMANAGER,
        f"--config.file={cfg}",
        f"--storage.path={work / 'alertmanager'}",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",
    ]
    proc = pl.spawn("alertmanager", argv, env=dict(os.environ), log_path=work / "logs" / "am.log")
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {proc.returncode}; see {work}/logs")
            try:
                if (await client.get("/-/ready")).status_code == 200:
                    return base, proc, None
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("alertmanager did not become ready")


# --- one report, one alert ---------------------------------------------------------------


# POSTs sent again after a connection error (the burst prints how many).
RETRIED: list[str] = []
# Errors of a pooled connection the server closed as it was reused (before any response).
_CLOSED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


async def post_report(client: httpx.AsyncClient, school: str, key: str, i: int) -> str:
    """POST one report; sent again (up to twice) if the connection broke before an answer.

    No Idempotency-Key: intake then reads the log for a stored report under that key before
    every append (one more JetStream request per report), which the benchmark would measure.
    A retry after a report that WAS recorded makes a second incident, whose emails count as
    "other" in the burst; the burst waits for the incident it was answered with. The clients'
    keep-alive expiry (benchmarks/peer.py) keeps such a race rare."""
    for attempt in range(3):
        try:
            r = await client.post(
                "/api/v1/encounters",
                json=pl.report_body(school, i),
                headers={"Authorization": f"Bearer {key}"},
            )
            break
        except _CLOSED as exc:
            if attempt == 2:
                raise
            RETRIED.append(f"{school} {i}: {type(exc).__name__}")
    if r.status_code != 202:
        raise RuntimeError(f"report refused: {r.status_code} {r.text[:200]}")
    return str(r.json()["incident_id"])


async def post_alert(client: httpx.AsyncClient, name: str, school: str) -> None:
    alert = {
        "labels": {"alertname": name, "school": school, "severity": "critical"},
        "annotations": {"summary": "Immigration enforcement at the front entrance"},
    }
    for attempt in range(3):  # the same alert again is one group: no second email
        try:
            r = await client.post("/api/v2/alerts", json=[alert])
            break
        except _CLOSED as exc:
            if attempt == 2:
                raise
            RETRIED.append(f"alert {name}: {type(exc).__name__}")
    if r.status_code != 200:
        raise RuntimeError(f"alert refused: {r.status_code} {r.text[:200]}")


async def dooralert_once(
    client: httpx.AsyncClient, sink: Sink, school: str, key: str, i: int
) -> float:
    t0 = time.monotonic()
    incident = await post_report(client, school, key, i)
    if not await sink.wait([incident], EMAILS, 30):
        raise RuntimeError(f"incident {incident}: {sink.count(incident)} of {EMAILS} emails in 30s")
    return sink.nth(incident, EMAILS) - t0


async def alertmanager_once(client: httpx.AsyncClient, sink: Sink, name: str, school: str) -> float:
    t0 = time.monotonic()
    await post_alert(client, name, school)
    if not await sink.wait([name], EMAILS, 30):
        raise RuntimeError(f"alert {name}: {sink.count(name)} of {EMAILS} emails in 30s")
    return sink.nth(name, EMAILS) - t0


# --- bursts ------------------------------------------------------------------------------


async def burst(sink: Sink, keys: list[str], post: Any, timeout: float = 300) -> dict[str, Any]:
    """POST every item with 32 in flight; seconds from the first POST to the last email."""
    sem = asyncio.Semaphore(32)
    out: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            out.append(await post(i))

    total_before = sink.total
    harness = harness_cpu(sink)
    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(len(keys))))
    posted = time.monotonic() - t0
    complete = await sink.wait(out, EMAILS, timeout)
    harness = {k: round(v - harness[k], 3) for k, v in harness_cpu(sink).items()}
    last = max((sink.nth(k, EMAILS) for k in out if sink.count(k) >= EMAILS), default=t0)
    emails = sum(min(EMAILS, sink.count(k)) for k in out)
    other = sink.total - total_before - emails
    accepted = sorted(t - t0 for k in out for t in sink.times.get(k, ())[:EMAILS])
    await asyncio.sleep(1.0)  # a duplicate would come just after its first
    return {
        "seconds": round(last - t0, 3),
        # Where the burst's time goes: every report answered (202, or Alertmanager's 200),
        # and the seconds by which a tenth, a quarter, half, ... of the emails were accepted.
        "posted_s": round(posted, 3),
        "accepted_s": {
            f"{q}%": round(accepted[max(0, len(accepted) * q // 100 - 1)], 3)
            for q in (10, 25, 50, 75, 90, 100)
        }
        if accepted
        else {},
        "emails": emails,
        "complete": complete,
        # The CPU the benchmark's own parts took on the same cores meanwhile: this process
        # (the 32 clients, the sink's reader thread) and the SMTP sink.
        "harness_cpu_s": harness,
        "other_emails": other,
        # Counted now, not at the end of the run: a report nobody acknowledges escalates 2 min
        # later (dooralert's example rules) and its tier-2 emails carry the same incident key.
        "duplicates": sum(1 for k in out if sink.count(k) > EMAILS),
    }


def harness_cpu(sink: Sink) -> dict[str, float]:
    """CPU seconds so far of this process (every thread) and of the SMTP sink."""
    return {"client": time.process_time(), "smtp sink": pl.cpu_seconds(sink.proc.pid)}


def cpu(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    return {name: pl.cpu_seconds(p.pid) for name, p in procs.items()}


def start_profile(
    procs: dict[str, subprocess.Popen[bytes]], svg: str, service: str = "notifier-1"
) -> subprocess.Popen[bytes]:
    """py-spy on one service (the first notifier unless told): a flame graph (.svg), else
    collapsed stacks."""
    spy = Path(sys.executable).with_name("py-spy")
    pid = str(procs[service].pid)
    fmt = ["-f", "raw"] if not svg.endswith(".svg") else []  # collapsed stacks, for grep
    return subprocess.Popen(
        [str(spy), "record", "--pid", pid, "-o", svg, "--rate", "250", "--nonblocking", *fmt],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def dooralert_burst(
    client: httpx.AsyncClient,
    sink: Sink,
    keys: dict[str, str],
    procs: dict[str, subprocess.Popen[bytes]],
    n: int,
    monitor: str,
    profile: str | None = None,
    profile_service: str = "notifier-1",
) -> dict[str, Any]:
    schools = list(keys)

    async def post(i: int) -> str:
        return await post_report(client, schools[i], keys[schools[i]], 1000 + i)

    spy = start_profile(procs, profile, profile_service) if profile and n == 0 else None
    retried = len(RETRIED)
    traffic = await peer_traffic.snapshot(monitor, procs)
    before = cpu(procs)
    got = await burst(sink, schools, post)
    after = cpu(procs)
    got["nats"] = peer_traffic.per_report(
        traffic, await peer_traffic.snapshot(monitor, procs), len(schools)
    )
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    got["cpu_s"] = {k: round(after[k] - before[k], 3) for k in procs}
    got["retried"] = RETRIED[retried:]
    return got


async def alertmanager_burst(
    client: httpx.AsyncClient, sink: Sink, count: int, proc: subprocess.Popen[bytes], n: int
) -> dict[str, Any]:
    run = secrets.token_hex(3)
    names = [f"burst-{run}-{i}" for i in range(count)]

    async def post(i: int) -> str:
        await post_alert(client, names[i], f"school-{i:03d}")
        return names[i]

    before = pl.cpu_seconds(proc.pid)
    got = await burst(sink, names, post)
    got["cpu_s"] = {"alertmanager": round(pl.cpu_seconds(proc.pid) - before, 3)}
    return got


# --- the SMTP server's own limit ---------------------------------------------------------


async def smtp_limit(sink: Sink, messages: int, connections: int) -> float:
    """Seconds to have `messages` accepted over `connections` pooled sessions."""
    run = secrets.token_hex(3)
    body = "Immigration enforcement at Front entrance, door 3. " * 30  # ~1.5 kB, like an alert

    async def session(c: int) -> None:
        smtp = aiosmtplib.SMTP(hostname=HOST, port=sink.port)
        await smtp.connect()
        for i in range(c, messages, connections):
            msg = EmailMessage()
            msg["From"], msg["To"] = "limit@bench.invalid", "law-oncall@district.example"
            msg["Subject"] = f"limit {i}"
            msg["X-Bench-Alert"] = f"limit-{run}-{i}"
            msg.set_content(body)
            await smtp.send_message(msg)
        await smtp.quit()

    t0 = time.monotonic()
    await asyncio.gather(*(session(c) for c in range(connections)))
    keys = [f"limit-{run}-{i}" for i in range(messages)]
    await sink.wait(keys, 1, 30)
    return round(max(sink.nth(k, 1) for k in keys) - t0, 3)
