"""Peer benchmark: dooralert beside Prometheus Alertmanager 0.25, both mailing ONE SMTP server.

    .venv/bin/python benchmarks/peer.py [--samples 40] [--schools 600] [--notifiers 2] [--json]
                                        [--smtp-rtt MS]
    make bench    (in .venv-bench, on the distribution's python3 where it has one: Makefile)

Every Python process of it runs on the Python that runs this script (printed first):
dooralert's services, the client and the SMTP sink. dooralert runs as in production, each part
its own process: nats-server (deploy/nats/server.conf with its users, a generated password
each, as `dooralert dev` runs it), `dooralert provision` (as admin), intake, router, notifier
(`--notifiers N` runs N of them on the one durable consumer) and the audit ledger, each
connecting as its own NATS user. The district is generated
in a temp dir: the example district's law, safety and leadership contacts and N schools, each
with its own intake key and principal, and the example rules and protocol. A report gets four
first-tier emails (law x2, safety, principal).

Alertmanager (Debian `prometheus-alertmanager`, installed with apt-get when missing and root;
otherwise skipped with the reason) runs with `--cluster.listen-address=` (no gossip), a temp
`--storage.path`, `group_wait: 0s` and one receiver with four `email_configs`; each alert has its
own alertname, so each is its own group and gets four emails.

Both deliver to benchmarks/smtp_sink.py, an aiosmtpd server in its own process that stamps each
accepted message with CLOCK_MONOTONIC (one clock for all processes on the machine).

`--smtp-rtt MS` (default 0: none) makes that server answer like a relay MS ms away (Office 365,
Google, a district's Postfix: 5-50 ms), where on localhost a round trip costs well under 1 ms:
every reply it sends (banner, EHLO, MAIL, RCPT, 354, the reply after the body, RSET, NOOP,
QUIT) goes out MS ms late, and an email counts as accepted when its final 250 goes out. What a
round trip costs then weighs as it does in a district: Alertmanager opens a connection per
email (banner, EHLO, MAIL, RCPT, DATA, body: six replies before the 250), dooralert's pooled
sessions pay MAIL, RCPT and DATA while it reads, then the body (four replies), so its burst is
bound by its sessions (DOORALERT_SMTP_POOL_SIZE x notifiers, one email per four round trips
each). Not simulated: the TCP handshake (one more round trip per new connection), STARTTLS and
AUTH (round trips per connection, which Alertmanager pays per email), and PIPELINING (real
relays offer it, the sink does not; dooralert would then send MAIL, RCPT and DATA in one round
trip, Alertmanager's Go client does not pipeline). The SMTP server's own limit is measured with
the delay too (8 sessions, four round trips a message).

Intake's abuse limits (per school, per client, reports per minute) are OFF for the benchmark
(DOORALERT_RATE_LIMIT_*=0): 600 schools from one address would otherwise be refused.

Measured, in one run: report -> all four emails accepted over --samples sequential samples,
the two systems interleaved (the order alternating) so noise falls on both; --schools reports
at once from 32 concurrent clients -> all emails accepted; the SMTP server's own limit (as many
messages over 8 pooled connections); CPU seconds per email of each dooralert process during the
burst, from /proc/<pid>/stat; and where dooralert's sequential samples spend their time, hop by
hop (benchmarks/peer_hops.py: POST, the log's stored times and the events' recorded_at, the
202, the SMTP sink's accept times). Numbers on a shared 2-core machine are noisy: compare within one
run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from benchmarks import peer_hops as hops  # noqa: E402
from benchmarks import peer_parts as parts  # noqa: E402
from benchmarks import peer_traffic  # noqa: E402
from benchmarks import pipeline as pl  # noqa: E402
from services.cli import devnats  # noqa: E402


async def interleaved_samples(
    args: argparse.Namespace,
    sink: parts.Sink,
    door: httpx.AsyncClient,
    am: httpx.AsyncClient | None,
    keys: dict[str, str],
    kept: list[hops.Sample],
) -> dict[str, list[float]]:
    """Report -> 4th email accepted, one system then the other, the order alternating;
    dooralert's counted samples also go to `kept` (for the per-hop breakdown)."""
    schools = list(keys)
    out: dict[str, list[float]] = {"dooralert": [], "alertmanager": []}
    run = secrets.token_hex(3)
    for i in range(args.samples + 2):  # the first two are warm-up, not counted
        school = schools[i % len(schools)]
        order = ["dooralert", "alertmanager"] if i % 2 == 0 else ["alertmanager", "dooralert"]
        for system in order:
            if system == "dooralert":
                sample = await hops.dooralert_sample(door, sink, school, keys[school], i)
                lat = sample.emails[-1] - sample.post
                if i >= 2:
                    kept.append(sample)
            elif am is not None:
                lat = await parts.alertmanager_once(am, sink, f"seq-{run}-{i}", school)
            else:
                continue
            if i >= 2:
                out[system].append(lat)
            await asyncio.sleep(0.05)  # let the other system's tail (records, ledger) settle
    return out


async def amain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "schools": args.schools,
        "notifiers": args.notifiers,
        "ledger_nice": args.ledger_nice,
        "python": interpreter(),
        "nice": dict(args.nice or []),
    }
    if args.smtp_rtt:
        result["smtp_rtt_ms"] = args.smtp_rtt
    sink = parts.start_sink(work, args.smtp_rtt)
    keys = parts.make_district(work / "config", args.schools)
    base, procs, admin_url, monitor = await parts.start_dooralert(args, work, sink.port)
    am_base, am_proc, am_skip = await parts.start_alertmanager(work, sink.port)
    result["alertmanager_skipped"] = am_skip
    # A pooled connection idle for 2 s is dropped by the client, well before uvicorn's 5 s
    # keep-alive timeout closes it (httpx's default expiry is that same 5 s: after the other
    # system's burst the server's close raced the reuse, an httpx.ReadError).
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=2.0)
    async with (
        httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as door,
        httpx.AsyncClient(base_url=am_base or base, timeout=60.0, limits=limits) as amc,
    ):
        am = amc if am_base else None
        print(f"bench: {args.samples} interleaved samples ...", file=sys.stderr, flush=True)
        kept: list[hops.Sample] = []
        offset = time.time() - time.monotonic()  # wall clock -> CLOCK_MONOTONIC
        names = {f"dooralert-{n}" for n in ("intake", "router", "notifier", "ledger")}
        if missing := await peer_traffic.wait_connected(monitor, names):
            print(f"bench: not connected to NATS: {sorted(missing)}", file=sys.stderr)
        subjects = peer_traffic.Subjects() if args.subjects else None
        if subjects is not None:
            await subjects.start(admin_url)
        traffic = await peer_traffic.snapshot(monitor, procs)
        seq = await interleaved_samples(args, sink, door, am, keys, kept)
        result["sequential_ms"] = {k: pl.summary_ms(v) for k, v in seq.items() if v}
        await asyncio.sleep(0.5)  # the last sample's notification.sent records
        after = await peer_traffic.snapshot(monitor, procs)
        if subjects is not None:
            result["nats_kinds"] = await subjects.stop()
        result["nats_sequential"] = peer_traffic.per_report(traffic, after, args.samples + 2)
        result["hops_ms"] = await hops.hop_breakdown(admin_url, kept, offset)
        bursts: dict[str, list[dict[str, Any]]] = {"dooralert": [], "alertmanager": []}
        for b in range(args.bursts):
            order = ["dooralert", "alertmanager"] if b % 2 == 0 else ["alertmanager", "dooralert"]
            for system in order:
                if system == "alertmanager" and am is None:
                    continue
                print(f"bench: burst {b + 1}, {system} ...", file=sys.stderr, flush=True)
                if system == "dooralert":
                    got = await parts.dooralert_burst(
                        door, sink, keys, procs, b, monitor, args.profile, args.profile_service
                    )
                else:
                    assert am is not None and am_proc is not None
                    got = await parts.alertmanager_burst(am, sink, args.schools, am_proc, b)
                bursts[system].append(got)
                await asyncio.sleep(2.0)
        result["bursts"] = bursts
    print("bench: the SMTP server's own limit ...", file=sys.stderr, flush=True)
    result["smtp_limit_s"] = await parts.smtp_limit(sink, args.schools * 4, 8)
    await asyncio.sleep(1.0)
    result["duplicates"] = sink.duplicates(4)
    result["logs"] = str(work / "logs")
    return result


def interpreter() -> str:
    """The Python that runs dooralert's services, the client and the SMTP sink (this one):
    version, binary, and whether its interpreter is in a shared libpython. A CPython built
    without --enable-optimizations (pyenv's default) costs about a fifth more CPU per email
    than the distribution's (README, Benchmarks); `make bench` picks the distribution's."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    linked = "shared libpython" if "libpython" in maps else "libpython linked in"
    binary = os.path.realpath(sys.executable)
    return f"{platform.python_implementation()} {platform.python_version()} ({binary}, {linked})"


def fmt_ms(s: dict[str, Any] | None, key: str) -> str:
    return f"{s[key]:.1f} ms" if s else "skipped"


def print_report(r: dict[str, Any], args: argparse.Namespace) -> None:
    w = print
    d, a = r["sequential_ms"].get("dooralert"), r["sequential_ms"].get("alertmanager")
    n = args.schools
    w("")
    w(
        f"Peer benchmark: dooralert ({r['notifiers']} notifier process(es)) vs Alertmanager 0.25, "
        "one aiosmtpd server in its own process"
    )
    w(
        "  dooralert: nats-server WITH users (deploy/nats/server.conf), provision, intake, router, "
        f"notifier, audit ledger (nice {r['ledger_nice']}) as separate processes; intake abuse "
        "limits OFF (DOORALERT_RATE_LIMIT_*=0); nats-server GOMAXPROCS="
        # The environment's own wins (devnats.DevNats.server_env).
        f"{os.environ.get('GOMAXPROCS') or args.nats_go_procs or 'Go default (one per core)'}"
        + "".join(f"; {name} nice {n}" for name, n in r.get("nice", {}).items())
    )
    w(f"  Python (dooralert's services, the client, the SMTP sink): {r['python']}")
    if r["alertmanager_skipped"]:
        w(f"  Alertmanager SKIPPED: {r['alertmanager_skipped']}")
    if args.smtp_rtt:
        w(
            f"  SMTP server answers like one {args.smtp_rtt:g} ms away (--smtp-rtt): each reply "
            "sent that late; an email counts when its final 250 is sent"
        )
    w("")
    w("| measure | dooralert | Alertmanager |")
    w("|---|---|---|")
    w(
        f"| report → all 4 emails accepted, p50 ({args.samples} sequential, interleaved) "
        f"| {fmt_ms(d, 'p50')} | {fmt_ms(a, 'p50')} |"
    )
    w(f"| same, p95 | {fmt_ms(d, 'p95')} | {fmt_ms(a, 'p95')} |")
    w(f"| same, p99 | {fmt_ms(d, 'p99')} | {fmt_ms(a, 'p99')} |")
    w(
        f"| {n} schools report at once (32 concurrent clients) → all {4 * n:,} emails accepted "
        f"| {_bursts(r['bursts']['dooralert'])} | {_bursts(r['bursts']['alertmanager'])} |"
    )
    w(
        f"| the SMTP server's own limit: {4 * n:,} messages over 8 pooled connections "
        f"| {r['smtp_limit_s']:.2f} s | |"
    )
    w("")
    for b in r["bursts"]["dooralert"]:
        w(
            f"  dooralert burst: {b['emails']} emails, {b['complete']} complete, "
            f"{b['other_emails']} other emails (pattern alerts, witnesses) in the window, "
            f"{b['duplicates']} reports with more than 4 emails (duplicates); "
            f"CPU per email:"
        )
        for name, secs in b["cpu_s"].items():
            w(f"    {name:<22}{secs:>7.2f} s  {1000 * secs / max(1, b['emails']):>6.2f} ms/email")
        total = sum(b["cpu_s"].values())
        w(f"    {'total':<22}{total:>7.2f} s  {1000 * total / max(1, b['emails']):>6.2f} ms/email")
        w(f"    {_harness(b)}")
    for b in r["bursts"]["alertmanager"]:
        w(
            f"  Alertmanager burst: {b['emails']} emails, {b['complete']} complete; CPU "
            f"{b['cpu_s']['alertmanager']:.2f} s = "
            f"{1000 * b['cpu_s']['alertmanager'] / max(1, b['emails']):.2f} ms/email; "
            f"{_harness(b)}"
        )
    for system, name in (("dooralert", "dooralert"), ("alertmanager", "Alertmanager")):
        for b in r["bursts"][system]:
            if b.get("accepted_s"):
                shares = ", ".join(f"{q} {s:.2f}" for q, s in b["accepted_s"].items())
                w(
                    f"  {name} burst timeline (s from the first POST): all reports answered "
                    f"{b['posted_s']:.2f}; emails accepted: {shares}"
                )
    w(
        f"  keys with more than 4 emails by the end of the run: {r['duplicates']} (duplicates, or "
        "dooralert's escalation 2 min after a report nobody acknowledged: see each burst's count)"
    )
    hops.print_hops(r.get("hops_ms", {}))
    peer_traffic.print_traffic(
        "sequential samples (Alertmanager's interleaved, idle polls included)",
        r.get("nats_sequential"),
    )
    peer_traffic.print_subjects(r.get("nats_kinds"), args.samples + 2)
    for i, b in enumerate(r["bursts"]["dooralert"]):
        peer_traffic.print_traffic(f"burst {i + 1}", b.get("nats"))
        if b.get("retried"):
            w(f"  POSTs sent again after a broken connection: {len(b['retried'])}")
    w(f"  logs: {r['logs']}")


def _harness(b: dict[str, Any]) -> str:
    """The benchmark's own CPU during a burst (on the same cores as the system measured)."""
    cpu = b.get("harness_cpu_s") or {}
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items()) or "not measured"
    return f"the benchmark meanwhile: {parts}"


def _bursts(runs: list[dict[str, Any]]) -> str:
    """A system's burst times, and their median when there are several (the VM's speed moves
    between bursts seconds apart: compare the medians)."""
    if not runs:
        return "skipped"
    times = [b["seconds"] for b in runs]
    shown = ", ".join(
        f"{b['seconds']:.2f} s" + ("" if b["complete"] else " INCOMPLETE") for b in runs
    )
    return shown if len(times) == 1 else f"**{statistics.median(times):.2f} s** ({shown})"


def _nice(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if name not in ("intake", "router", "notifier") or not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected intake|router|notifier=N")
    return name, int(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=40, help="sequential samples per system")
    ap.add_argument("--schools", type=int, default=600, help="schools in the burst")
    ap.add_argument(
        "--bursts",
        type=int,
        default=4,
        help="bursts per system, which goes first alternating (default %(default)s, so each "
        "goes first as often: the table shows their median)",
    )
    ap.add_argument(
        "--notifiers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="notifier processes (default: one per core, up to 2, as deploy/one-machine.md)",
    )
    ap.add_argument(
        "--nice",
        action="append",
        type=_nice,
        metavar="SERVICE=N",
        help="run intake, router or the notifiers at this niceness (repeatable; negative "
        "needs root); the ledger's is --ledger-nice",
    )
    ap.add_argument(
        "--ledger-nice",
        type=int,
        default=10,
        help="the audit ledger's niceness (0: the alert path's priority); see deploy/README.md",
    )
    ap.add_argument(
        "--nats-go-procs",
        type=int,
        default=devnats.NATS_GO_PROCS,
        metavar="N",
        help="nats-server's GOMAXPROCS (default %(default)s, as deploy/one-machine.md; "
        "0: Go's default, one per core)",
    )
    ap.add_argument("--profile", help="py-spy the first notifier in the first burst (SVG)")
    ap.add_argument(
        "--profile-service",
        default="notifier-1",
        help="the process --profile watches: intake, router, ledger, notifier-N "
        "(default %(default)s)",
    )
    ap.add_argument(
        "--subjects",
        action="store_true",
        help="count every NATS message by kind during the sequential samples (an admin "
        "subscription to '>': a load of its own, so their latencies are not comparable)",
    )
    ap.add_argument(
        "--smtp-rtt",
        type=float,
        default=0.0,
        metavar="MS",
        help="the SMTP server answers like a relay MS ms away: every reply (banner, EHLO, MAIL, "
        "RCPT, DATA, the body's 250, RSET, NOOP, QUIT) sent MS ms late (default 0: localhost)",
    )
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (store, logs)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="dooralert-peer-"))
    (work / "logs").mkdir()
    try:
        result = asyncio.run(amain(args, work))
        print_report(result, args)
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        complete = all(b["complete"] for bs in result["bursts"].values() for b in bs)
        return 0 if complete else 1
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        pl.stop_children()
        if args.keep:
            print(f"bench: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
