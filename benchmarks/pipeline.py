"""End-to-end benchmark: intake HTTP → router → notifier → SMTP, beside raw JetStream limits.

    .venv/bin/python benchmarks/pipeline.py [--reports N] [--concurrency C] [--json]
    make bench

Everything it needs is started here and stopped by PID when it ends (also on Ctrl-C or an
error): a nats-server with its store in a temp dir on a free loopback port, an aiosmtpd sink
in this process that records when each message is accepted and for which incident (header
`X-Dooralert-Incident`), and the three services as subprocesses — `python -m
services.cli.main intake|router|notifier`, configured by DOORALERT_* environment exactly
as `dooralert dev` runs them — so the numbers are those of what users run.

Measured:
1. raw JetStream on the same server, same run: `js.publish_async` (pipelined), `js.publish`
   awaiting each PubAck, and pull `fetch` in batches of 500 (without and with acks), with
   ~700-byte payloads and a `Nats-Msg-Id` header like the services' events;
2. the pipeline: N reports POSTed over HTTP with bounded concurrency, alternating the two
   example schools; per incident the latency from POST start to the SMTP sink accepting the
   first and the last of its emails; sustained incidents/s, emails/s and events appended/s;
   per-stage latency from the stream's own timestamps.

Numbers on a shared 2-core machine are noisy: compare within one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import nats  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig  # noqa: E402

from services.cli.dev import nats_server_binary  # noqa: E402
from services.eventlog import (  # noqa: E402
    SUBJECT_PREFIX,
    StoredMessage,
    connection_options,
    provision,
    read_messages,
)
from tests.support import report  # noqa: E402

CONFIG_DIR = REPO / "deploy" / "examples"
SCHOOLS = [("hamline", "demo-hamline-intake-key"), ("lincoln-park", "demo-lincoln-intake-key")]
HOST = "127.0.0.1"


# --- processes ---------------------------------------------------------------------------

_children: list[tuple[str, subprocess.Popen[bytes]]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def spawn(
    name: str, argv: list[str], *, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as logfile:
        # Own session: a Ctrl-C in the terminal reaches only this script, which stops the
        # children in order (services first, nats-server last).
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _children.append((name, proc))
    return proc


def stop_children() -> None:
    while _children:
        name, proc = _children.pop()
        if proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)  # by PID, never by name
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            print(f"bench: {name} (pid {proc.pid}) ignored SIGTERM; killing", file=sys.stderr)
            proc.kill()
            proc.wait()


atexit.register(stop_children)


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> dict[str, float]:
    snap = {name: cpu_seconds(proc.pid) for name, proc in _children}
    snap["bench (client + SMTP sink)"] = time.process_time()
    return snap


# --- SMTP sink ---------------------------------------------------------------------------


class SinkHandler:
    """Accepts every message; records perf_counter() at accept time and the incident."""

    def __init__(self) -> None:
        self.by_incident: dict[str, list[float]] = defaultdict(list)
        self.total = 0
        self.without_incident = 0
        self.peers: set[Any] = set()  # (host, port) of each client connection that sent mail
        self._parser = BytesHeaderParser()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.perf_counter()
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        incident = self._parser.parsebytes(raw).get("X-Dooralert-Incident")
        if incident:
            self.by_incident[str(incident).strip()].append(now)
        else:
            self.without_incident += 1
        self.total += 1
        self.peers.add(tuple(session.peer) if session.peer else None)
        return "250 OK accepted"

    def count(self, incident: str) -> int:
        return len(self.by_incident.get(incident, ()))


# --- helpers -----------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))  # nearest rank
    return s[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(pct(values, 50) * 1000, 1),
        "p95": round(pct(values, 95) * 1000, 1),
        "p99": round(pct(values, 99) * 1000, 1),
        "max": round(max(values) * 1000, 1) if values else float("nan"),
    }


def report_body(school: str, i: int) -> dict[str, Any]:
    """The tests' sample report, varied a little, with notes of a realistic length."""
    return report(
        school_id=school,
        location=f"Front entrance, door {i % 7 + 1}",
        notes="Two agents in plain clothes asked for the office; kept outside, law called.",
    )


# --- raw JetStream -----------------------------------------------------------------------


async def raw_jetstream(url: str, messages: int, size: int) -> dict[str, Any]:
    nc = await nats.connect(**connection_options(url, name="bench-raw"))
    js = nc.jetstream()
    stream = "BENCH_RAW"
    out: dict[str, Any] = {"messages": messages, "payload_bytes": size}
    try:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=["bench_raw.>"],
                storage=StorageType.FILE,
                duplicate_window=3600.0,
            )
        )
        payload = secrets.token_bytes(size)

        # publish_async: pipelined, up to nats-py's default 4000 in flight.
        t0 = time.perf_counter()
        futures = []
        for i in range(messages):
            futures.append(
                await js.publish_async(
                    f"bench_raw.async.{i % 64}",
                    payload,
                    stream=stream,
                    headers={"Nats-Msg-Id": f"async-{i}"},
                )
            )
        await js.publish_async_completed()
        dt = time.perf_counter() - t0
        errors = sum(1 for f in futures if f.exception() is not None)
        out["publish_async_msg_s"] = round(messages / dt)
        out["publish_async_errors"] = errors

        # Sequential publish, awaiting each PubAck (what publish_event does).
        t0 = time.perf_counter()
        for i in range(messages):
            await js.publish(
                f"bench_raw.seq.{i % 64}",
                payload,
                stream=stream,
                headers={"Nats-Msg-Id": f"seq-{i}"},
            )
        out["publish_seq_msg_s"] = round(messages / (time.perf_counter() - t0))

        # Pull fetch in batches of 500: without acks, then with an explicit ack per message.
        for label, policy in (
            ("fetch500_noack_msg_s", AckPolicy.NONE),
            ("fetch500_ack_msg_s", AckPolicy.EXPLICIT),
        ):
            psub = await js.pull_subscribe(
                "bench_raw.async.>",
                stream=stream,
                config=ConsumerConfig(
                    ack_policy=policy,
                    deliver_policy=DeliverPolicy.ALL,
                    max_ack_pending=-1,
                    inactive_threshold=30.0,
                ),
            )
            got = 0
            t0 = time.perf_counter()
            while got < messages:
                batch = await psub.fetch(min(500, messages - got), timeout=5)
                if policy == AckPolicy.EXPLICIT:
                    for m in batch:
                        await m.ack()
                got += len(batch)
            if policy == AckPolicy.EXPLICIT:
                await nc.flush()
            out[label] = round(got / (time.perf_counter() - t0))
            await psub.unsubscribe()
    finally:
        try:
            await js.delete_stream(stream)
        except Exception:  # noqa: BLE001 - the temp store goes anyway
            pass
        await nc.close()
    return out


# --- pipeline ----------------------------------------------------------------------------


@dataclass
class Posted:
    school: str
    t_start: float  # perf_counter
    wall_start: float  # time.time(), for comparing with stream timestamps
    t_done: float = 0.0
    status: int = 0
    incident: str | None = None
    error: str | None = None


async def post_one(client: httpx.AsyncClient, school: str, key: str, i: int) -> Posted:
    p = Posted(school=school, t_start=time.perf_counter(), wall_start=time.time())
    try:
        r = await client.post(
            "/api/v1/encounters",
            json=report_body(school, i),
            headers={"Authorization": f"Bearer {key}"},
        )
        p.status = r.status_code
        if r.status_code == 202:
            p.incident = r.json()["incident_id"]
        else:
            p.error = r.text[:200]
    except httpx.HTTPError as exc:
        p.error = f"{type(exc).__name__}: {exc}"
    p.t_done = time.perf_counter()
    return p


async def wait_emails(sink: SinkHandler, want: dict[str, int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(sink.count(inc) >= k for inc, k in want.items()):
            return True
        await asyncio.sleep(0.02)
    return False


async def wait_healthz(
    base: str, procs: list[tuple[str, subprocess.Popen[bytes]]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=1.0) as client:
        while time.monotonic() < deadline:
            for name, proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} during start-up")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("intake did not become healthy")


def stage_latencies(messages: list[StoredMessage], incidents: set[str]) -> dict[str, Any]:
    per: dict[str, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    counts: Counter[str] = Counter()
    sizes: list[int] = []
    for m in messages:
        parts = m.subject.split(".")
        if len(parts) < 4 or parts[2] not in incidents:
            continue
        etype = ".".join(parts[3:])
        per[parts[2]][etype].append(m.time)
        counts[etype] += 1
        sizes.append(len(m.data))
    router, notifier, req_to_first_sent = [], [], []
    for ev in per.values():
        if ev.get("encounter.reported") and ev.get("escalation.decided"):
            router.append(
                (min(ev["escalation.decided"]) - min(ev["encounter.reported"])).total_seconds()
            )
        if ev.get("notification.requested") and ev.get("notification.sent"):
            notifier.append(
                (max(ev["notification.sent"]) - min(ev["notification.requested"])).total_seconds()
            )
            req_to_first_sent.append(
                (min(ev["notification.sent"]) - min(ev["notification.requested"])).total_seconds()
            )
    return {
        "events_by_type": dict(counts),
        "events_total": sum(counts.values()),
        "event_bytes_avg": round(sum(sizes) / len(sizes)) if sizes else 0,
        "reported_to_decided_ms": summary_ms(router),
        "requested_to_first_sent_ms": summary_ms(req_to_first_sent),
        "requested_to_last_sent_ms": summary_ms(notifier),
        "_reported_at": {
            inc: min(ev["encounter.reported"])
            for inc, ev in per.items()
            if ev.get("encounter.reported")
        },
    }


async def pipeline(
    args: argparse.Namespace, workdir: Path, nats_url: str, sink: SinkHandler, smtp_port: int
) -> dict[str, Any]:
    nc = await nats.connect(**connection_options(nats_url, name="bench-provision"))
    try:
        await provision(nc.jetstream())
    finally:
        await nc.close()

    http_port = free_port()
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats_url,
        "DOORALERT_CONFIG_DIR": str(CONFIG_DIR),
        "DOORALERT_SMTP_HOST": HOST,
        "DOORALERT_SMTP_PORT": str(smtp_port),
        "DOORALERT_HTTP_HOST": HOST,
        "DOORALERT_HTTP_PORT": str(http_port),
        "DOORALERT_SECRET_KEYS": secrets.token_urlsafe(48),
        "DOORALERT_LOG_FORMAT": "json",
        # The benchmark is a flood from two schools, far beyond what staff ever send: intake's
        # abuse limits (per school, per client address) are off so they measure the pipeline.
        "DOORALERT_RATE_LIMIT_REPORTS_PER_MINUTE": "0",
        "DOORALERT_RATE_LIMIT_SCHOOL_PER_MINUTE": "0",
        "DOORALERT_RATE_LIMIT_CLIENT_PER_MINUTE": "0",
    }
    logs = workdir / "logs"
    cli = [sys.executable, "-m", "services.cli.main"]
    procs = [
        (name, spawn(name, [*cli, name], env=env, log_path=logs / f"{name}.log"))
        for name in ("router", "notifier", "intake")
    ]
    base = f"http://{HOST}:{http_port}"
    await wait_healthz(base, procs, 60)

    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
        # Warm-up: one report per school, not measured; proves router and notifier are bound
        # and tells how many emails each school's incident gets.
        emails_per_school: dict[str, int] = {}
        for school, key in SCHOOLS:
            p = await post_one(client, school, key, 0)
            if p.incident is None:
                raise RuntimeError(f"warm-up report refused: {p.status} {p.error}")
            deadline = time.monotonic() + 60
            while sink.count(p.incident) == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # let the rest of its emails arrive
            emails_per_school[school] = sink.count(p.incident)
            if emails_per_school[school] == 0:
                raise RuntimeError(f"warm-up incident for {school} got no email in 60s; see {logs}")

        sem = asyncio.Semaphore(args.concurrency)

        async def bounded(i: int) -> Posted:
            school, key = SCHOOLS[i % 2]
            async with sem:
                return await post_one(client, school, key, i)

        peers_before, total_before = len(sink.peers), sink.total
        cpu_before = cpu_snapshot()
        t_first = time.perf_counter()
        posted = await asyncio.gather(*(bounded(i) for i in range(args.reports)))
        t_posted = time.perf_counter()

    ok = [p for p in posted if p.incident]
    want = {p.incident: emails_per_school[p.school] for p in ok if p.incident}
    complete = await wait_emails(sink, want, args.timeout)
    t_complete = time.perf_counter()
    cpu_after = cpu_snapshot()
    cpu = {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_before}
    smtp_connections = len(sink.peers) - peers_before
    smtp_messages = sink.total - total_before

    # Ground truth from the log: events per incident and stage latencies.
    nc = await nats.connect(**connection_options(nats_url, name="bench-read"))
    try:
        stored = await read_messages(nc.jetstream(), f"{SUBJECT_PREFIX}.>")
    finally:
        await nc.close()
    stages = stage_latencies(stored, set(want))
    reported_at = stages.pop("_reported_at")

    first_lat, last_lat, post_lat, post_to_stored = [], [], [], []
    last_email = t_first
    emails = 0
    for p in ok:
        assert p.incident
        times = sink.by_incident.get(p.incident, [])
        post_lat.append(p.t_done - p.t_start)
        if p.incident in reported_at:
            post_to_stored.append(reported_at[p.incident].timestamp() - p.wall_start)
        if not times:
            continue
        emails += len(times)
        first_lat.append(min(times) - p.t_start)
        last_lat.append(max(times) - p.t_start)
        last_email = max(last_email, max(times))
    window = last_email - t_first
    post_window = t_posted - t_first
    return {
        "reports": args.reports,
        "concurrency": args.concurrency,
        "accepted": len(ok),
        "refused": Counter(p.status for p in posted if not p.incident),
        "first_error": next((p.error for p in posted if p.error), None),
        "complete": complete,
        "incidents_with_all_emails": sum(1 for inc, k in want.items() if sink.count(inc) >= k),
        "emails_per_incident": emails_per_school,
        "emails": emails,
        "window_s": round(window, 3),
        "post_window_s": round(post_window, 3),
        "intake_reports_s": round(len(ok) / post_window, 1),
        "incidents_s": round(len(ok) / window, 1),
        "emails_s": round(emails / window, 1),
        "events_s": round(stages["events_total"] / window, 1),
        "post_response_ms": summary_ms(post_lat),
        "post_to_stored_ms": summary_ms(post_to_stored),
        "smtp_connections": smtp_connections,
        "smtp_connections_total": len(sink.peers),
        "smtp_messages": smtp_messages,
        "cpu_window_s": round(t_complete - t_first, 3),
        "cpu_seconds": cpu,
        "first_email_ms": summary_ms(first_lat),
        "last_email_ms": summary_ms(last_lat),
        **stages,
        "logs": str(logs),
    }


# --- output ------------------------------------------------------------------------------


def print_report(raw: dict[str, Any], pipe: dict[str, Any]) -> None:
    w = print
    w("")
    w(
        f"Raw JetStream (this server, this run): {raw['messages']} msgs x "
        f"{raw['payload_bytes']} B, file storage, Nats-Msg-Id header"
    )
    w(f"  publish_async (pipelined)        {raw['publish_async_msg_s']:>9,} msg/s")
    w(f"  publish, await each PubAck       {raw['publish_seq_msg_s']:>9,} msg/s")
    w(f"  fetch batch=500, no ack          {raw['fetch500_noack_msg_s']:>9,} msg/s")
    w(f"  fetch batch=500 + ack            {raw['fetch500_ack_msg_s']:>9,} msg/s")
    w("")
    w(
        f"Pipeline: {pipe['reports']} reports over HTTP, concurrency {pipe['concurrency']}, "
        f"{pipe['accepted']} accepted, emails/incident {pipe['emails_per_incident']}, "
        f"{'all' if pipe['complete'] else 'NOT all'} emails received "
        f"({pipe['incidents_with_all_emails']}/{pipe['accepted']} incidents complete)"
    )
    if pipe["refused"]:
        w(f"  refused: {dict(pipe['refused'])}  first error: {pipe['first_error']}")
    w(
        f"  events in the log for these incidents: {pipe['events_total']} "
        f"{pipe['events_by_type']}  avg {pipe['event_bytes_avg']} B"
    )
    w(
        f"  window first POST -> last email: {pipe['window_s']} s   (all POSTs answered after "
        f"{pipe['post_window_s']} s)"
    )
    w("")
    w(f"  {'latency (ms)':<40}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for label, key in (
        ("POST -> SMTP accepted, first email", "first_email_ms"),
        ("POST -> SMTP accepted, last email", "last_email_ms"),
        ("POST response (202)", "post_response_ms"),
        ("POST -> report stored (stream time)", "post_to_stored_ms"),
        ("reported -> decided (router)", "reported_to_decided_ms"),
        ("requested -> first sent (notifier)", "requested_to_first_sent_ms"),
        ("requested -> last sent (notifier)", "requested_to_last_sent_ms"),
    ):
        s = pipe[key]
        w(f"  {label:<40}{s['p50']:>9}{s['p95']:>9}{s['p99']:>9}{s['max']:>9}")
    w("")
    pa, ps = raw["publish_async_msg_s"], raw["publish_seq_msg_s"]
    w(f"  {'rate':<34}{'pipeline':>11}{'raw limit':>30}{'ratio':>9}")
    rows = [
        ("events appended/s", pipe["events_s"], "publish_async", pa),
        ("events appended/s", pipe["events_s"], "publish (await each)", ps),
        ("reports accepted/s (intake only)", pipe["intake_reports_s"], "publish (await each)", ps),
        ("incidents/s (sustained, e2e)", pipe["incidents_s"], "", None),
        ("emails/s", pipe["emails_s"], "", None),
    ]
    for label, value, limit_label, limit in rows:
        lim = f"{limit_label} {limit:,}" if limit else ""
        ratio = f"{value / limit:.3f}" if limit else ""
        w(f"  {label:<34}{value:>11,.1f}{lim:>30}{ratio:>9}")
    w("")
    w(
        f"  SMTP: {pipe['smtp_messages']} messages over {pipe['smtp_connections']} new connections "
        f"({pipe['smtp_connections_total']} opened in the whole run: the notifier pools sessions)"
    )
    win = pipe["cpu_window_s"]
    w(f"  CPU seconds from first POST to last email ({win} s; 2 cores shared with others):")
    for name, secs in pipe["cpu_seconds"].items():
        w(f"    {name:<28}{secs:>7.2f} s  ({100 * secs / win:5.1f}% of one core)")
    w("")
    w(f"  service logs: {pipe['logs']}")


async def amain(
    args: argparse.Namespace, workdir: Path, nats_url: str, sink: SinkHandler, smtp_port: int
) -> dict[str, Any]:
    print(f"bench: raw JetStream, {args.raw_messages} messages ...", file=sys.stderr, flush=True)
    raw = await raw_jetstream(nats_url, args.raw_messages, args.payload_bytes)
    print(
        f"bench: pipeline, {args.reports} reports, concurrency {args.concurrency} ...",
        file=sys.stderr,
        flush=True,
    )
    pipe = await pipeline(args, workdir, nats_url, sink, smtp_port)
    return {
        "raw_jetstream": raw,
        "pipeline": pipe,
        "ratio_events_to_publish_async": round(pipe["events_s"] / raw["publish_async_msg_s"], 4),
        "ratio_events_to_publish_seq": round(pipe["events_s"] / raw["publish_seq_msg_s"], 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", type=int, default=200, help="reports to POST (default 200)")
    ap.add_argument("--concurrency", type=int, default=16, help="POSTs in flight (default 16)")
    ap.add_argument(
        "--raw-messages",
        type=int,
        default=10000,
        help="messages per raw JetStream test (default 10000)",
    )
    ap.add_argument("--payload-bytes", type=int, default=700)
    ap.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for every email after the last POST",
    )
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (store, logs)")
    args = ap.parse_args()

    # SIGTERM behaves like Ctrl-C: unwind through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    workdir = Path(tempfile.mkdtemp(prefix="dooralert-bench-"))
    (workdir / "logs").mkdir()
    controller: Controller | None = None
    try:
        nats_port = free_port()
        spawn(
            "nats-server",
            [
                nats_server_binary(),
                "-a",
                HOST,
                "-p",
                str(nats_port),
                "-js",
                "-sd",
                str(workdir / "nats"),
            ],
            env=dict(os.environ),
            log_path=workdir / "logs" / "nats-server.log",
        )
        wait_for_port(nats_port, 15)
        sink = SinkHandler()
        smtp_port = free_port()
        controller = Controller(sink, hostname=HOST, port=smtp_port)
        controller.start()
        result = asyncio.run(amain(args, workdir, f"nats://{HOST}:{nats_port}", sink, smtp_port))
        print_report(result["raw_jetstream"], result["pipeline"])
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        return 0 if result["pipeline"]["complete"] else 1
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        stop_children()
        if controller is not None:
            controller.stop()
        if args.keep:
            print(f"bench: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
