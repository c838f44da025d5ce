"""Flat-log benchmark (issue 13): the same measures on an empty log and on one with N events.

    .venv/bin/python benchmarks/flat_log.py [--events 1000000] [--samples 20] [--gets 50]
        [--restarts 3] [--json] [--keep]
    make bench-flat ARGS="--events 100000"

Two deployments run side by side, each as in production (benchmarks/stack.py): nats-server
with the deployment's users, `dooralert provision` as admin, router, notifier, intake and the
audit ledger each its own process as its own NATS user; one aiosmtpd sink in its own process
(benchmarks/smtp_sink.py) takes both's emails. Both logs are seeded with the same 8 real
incidents (reports, updates, all-clears and their emails, handled by the services). Then one
log gets N more events (benchmarks/bulk_log.py: those incidents cloned with fresh ids across
the district's schools, an acknowledgement added to half, appended pipelined, the durable
consumers recreated past them as provision restores a lost one, since a log that big was
handled long ago); its ledger catches up
on them (the rate is printed), and every measure runs on both, the two alternating so the
noise of a shared machine falls on both:

- start-up: each service stopped and started alone (--restarts times, the median), process
  start -> /readyz 200 (intake's on its HTTP port, the others' on their health ports), and
  the CPU seconds the process spent until then (/proc/<pid>/stat);
- the ledger's resume: the same restart, until its tree covers the whole log (its
  dooralert_ledger_tree_size reaches the stream's last seq), from its last checkpoint;
- report -> the 4th first-tier email accepted (--samples each, after 2 warm-ups);
- GET /api/v1/incidents/{id} with the reporter's status link and the incident page with its
  page link (--gets each, after 2 warm-ups), on the first seeded incident (about 30 events).

The table gives the ratio N-events / empty and PASS when it is within 1.2x (exit 1 on a FAIL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import nats  # noqa: E402

from benchmarks import bulk_log  # noqa: E402
from benchmarks import peer_parts as parts  # noqa: E402
from benchmarks import pipeline as pl  # noqa: E402
from benchmarks.stack import Stack, post_report  # noqa: E402
from services.eventlog import STREAM  # noqa: E402

LIMIT = 1.2
PHASES = ("empty", "full")
SEED = 8  # real incidents per log before the fill
ORDER = ["ledger", "router", "notifier", "intake"]
say = lambda *a: print("bench:", *a, file=sys.stderr, flush=True)  # noqa: E731


async def last_seq(stack: Stack) -> int:
    nc = await nats.connect(stack.url_for("admin"))
    try:
        return int((await nc.jetstream().stream_info(STREAM)).state.last_seq)
    finally:
        await nc.close()


async def ledger_caught_up(stack: Stack, t0: float, timeout: float = 1800) -> float:
    """Seconds from `t0` until the running ledger's tree covers the log's last seq."""
    want = await last_seq(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = await stack.metric("ledger", "dooralert_ledger_tree_size")
        if size is not None and size >= want:
            return time.monotonic() - t0
        if stack.procs["ledger"].poll() is not None:
            raise RuntimeError(f"the ledger exited; see {stack.work}/logs/ledger.log")
        await asyncio.sleep(0.02)
    raise RuntimeError("the ledger did not catch up")


def alternating(i: int) -> list[str]:
    """The order of the two logs in round `i`: noise falls on both."""
    return list(PHASES) if i % 2 == 0 else list(reversed(PHASES))


async def restarts(stacks: dict[str, Stack], n: int) -> dict[str, dict[str, list[float]]]:
    """Each service of each stack stopped and started alone, `n` times, the stacks
    alternating: seconds to ready; for the ledger also seconds until its tree covers the log
    (the resume from its last checkpoint)."""
    out: dict[str, dict[str, list[float]]] = {p: defaultdict(list) for p in PHASES}
    for i in range(n):
        for name in ORDER:
            for phase in alternating(i):
                stack = stacks[phase]
                stack.stop(name)
                t0 = time.monotonic()
                stack.start(name)
                out[phase][name].append(await stack.wait_ready(name, since=t0))
                # CPU seconds to ready: the work start-up did, less bent by a busy machine
                # than the wall time (a process waiting for a core spends none).
                out[phase][f"{name}_cpu"].append(pl.cpu_seconds(stack.procs[name].pid))
                if name == "ledger":
                    out[phase]["ledger_caught_up"].append(await ledger_caught_up(stack, t0))
    return out


async def report_once(
    client: httpx.AsyncClient,
    sink: parts.Sink,
    school: str,
    key: str,
    i: int,
    timeout: float = 60,
) -> tuple[float, dict[str, Any]]:
    """Report -> the 4th first-tier email accepted; the latency and intake's answer."""
    t0 = time.monotonic()
    got = await post_report(client, school, key, i)
    incident = got["incident_id"]
    if not await sink.wait([incident], parts.EMAILS, timeout):
        raise RuntimeError(f"incident {incident}: {sink.count(incident)} emails in {timeout}s")
    return sink.nth(incident, parts.EMAILS) - t0, {**got, "school": school}


async def report_latencies(
    clients: dict[str, httpx.AsyncClient], sink: parts.Sink, keys: dict[str, str], n: int
) -> dict[str, list[float]]:
    """n samples per log after 2 warm-ups each, the logs alternating; under "first:<log>"
    the first report after the restarts (the router reads its pattern window: every report
    of the last hour, and all the appended ones were stored within it)."""
    schools = list(keys)
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    for i in range(n + 2):
        school = schools[i % len(schools)]
        for phase in alternating(i):
            client, key = clients[phase], keys[school]
            lat, _ = await report_once(client, sink, school, key, 100 + i, 60 if i >= 2 else 900)
            if i >= 2:
                out[phase].append(lat)
            elif i == 0:
                out[f"first:{phase}"] = [lat]
            await asyncio.sleep(0.05)
    return out


async def get_latencies(
    clients: dict[str, httpx.AsyncClient], paths: dict[str, str], n: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    for i in range(n + 2):
        for phase in alternating(i):
            t0 = time.monotonic()
            r = await clients[phase].get(paths[phase])
            if r.status_code != 200:
                raise RuntimeError(f"GET {paths[phase].split('?')[0]}: {r.status_code}")
            if i >= 2:
                out[phase].append(time.monotonic() - t0)
    return out


def local_path(url: str) -> str:
    split = urlsplit(url)
    return f"{split.path}?{split.query}"


async def follow_ups(
    client: httpx.AsyncClient, keys: dict[str, str], answers: list[dict[str, Any]]
) -> None:
    """An update on every other incident and an all-clear on every third: the log's mix."""
    for n, got in enumerate(answers):
        incident, key = got["incident_id"], keys[got["school"]]
        auth = {"Authorization": f"Bearer {key}"}
        if n % 2 == 0:
            body = {"agent_count": 3, "notes": "A third agent arrived at the door."}
            r = await client.post(f"/api/v1/incidents/{incident}/updates", json=body, headers=auth)
            if r.status_code != 202:
                raise RuntimeError(f"update refused: {r.status_code} {r.text[:200]}")
        if n % 3 == 0:
            r = await client.post(f"/api/v1/incidents/{incident}/resolve", json={}, headers=auth)
            if r.status_code != 202:
                raise RuntimeError(f"all-clear refused: {r.status_code} {r.text[:200]}")


async def seed(
    client: httpx.AsyncClient, sink: parts.Sink, keys: dict[str, str]
) -> list[dict[str, Any]]:
    """The same few real incidents in each log (the first is the one both GET): reports,
    updates, all-clears and their emails, handled by the services."""
    schools = list(keys)
    answers = []
    for i in range(SEED):
        school = schools[i % len(schools)]
        answers.append((await report_once(client, sink, school, keys[school], i))[1])
    await follow_ups(client, keys, answers)
    return answers


async def fill(
    args: argparse.Namespace, stack: Stack, keys: dict[str, str], seeded: list[str]
) -> dict[str, Any]:
    """The services stopped, N clones of the seeded incidents appended, the durables moved past
    them, the ledger caught up on them; then every service started again."""
    stack.stop_services()
    admin = stack.url_for("admin")
    nc = await nats.connect(admin)
    templates = await bulk_log.read_templates(nc.jetstream(), seeded)
    await nc.close()
    per = sum(len(t.pieces) // 2 for t in templates) / len(templates)
    bulk_log.check_clones(templates, list(keys))  # every kind of clone is a valid event
    say(f"{len(templates)} template incidents, {per:.1f} events each; publishing ...")
    count, secs = await bulk_log.publish(
        admin,
        bulk_log.clones(templates, list(keys), args.events),
        progress=lambda n, s: say(f"  {n:,} events in {s:.1f} s"),
    )
    out: dict[str, Any] = {"events": count, "seconds": round(secs, 1), "per_s": round(count / secs)}
    say(f"published {count:,} in {secs:.1f} s; the durable consumers recreated past them ...")
    out["skipped"] = await bulk_log.skip_durables(admin)
    say("ledger catch-up ...")
    t0 = time.monotonic()
    stack.start("ledger")
    caught = await ledger_caught_up(stack, t0)
    out["ledger_catch_up"] = {"seconds": round(caught, 1), "per_s": round(count / caught)}
    for name in ORDER[1:]:
        stack.start(name)
    for name in ORDER[1:]:
        await stack.wait_ready(name, since=time.monotonic())
    return out


async def amain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sink = parts.start_sink(work)
    keys = parts.make_district(work / "district", args.schools)
    stacks: dict[str, Stack] = {}
    for phase in PHASES:
        (work / phase).mkdir()
        shutil.copytree(work / "district", work / phase / "config")
        stacks[phase] = stack = Stack(work / phase, sink.port)
        stack.start_nats()
        for name in ORDER:
            stack.start(name)
    for stack in stacks.values():
        for name in ORDER:
            await stack.wait_ready(name, since=time.monotonic())
    limits = httpx.Limits(max_keepalive_connections=4)
    clients = {
        p: httpx.AsyncClient(base_url=s.base, timeout=60.0, limits=limits)
        for p, s in stacks.items()
    }
    try:
        say("seeding both logs with the same real incidents ...")
        refs = {p: await seed(clients[p], sink, keys) for p in PHASES}
        await asyncio.sleep(3.0)  # the follow-ups' emails, recorded as sends
        say(f"appending {args.events:,} events to one log ...")
        seeded = [a["incident_id"] for a in refs["full"]]
        result: dict[str, Any] = {"events": args.events}
        result["fill"] = await fill(args, stacks["full"], keys, seeded)
        say(f"{args.restarts} restart(s) of each service on each log ...")
        ups = await restarts(stacks, args.restarts)
        result["startup_s"] = {
            p: {k: statistics.median(v) for k, v in ups[p].items()} for p in PHASES
        }
        result["startup_samples_s"] = {p: dict(ups[p]) for p in PHASES}
        say(f"{args.samples} reports -> email on each log ...")
        lat = await report_latencies(clients, sink, keys, args.samples)
        result["report_email_ms"] = {p: pl.summary_ms(lat[p]) for p in PHASES}
        result["first_report_s"] = {p: lat[f"first:{p}"][0] for p in PHASES}
        say(f"{args.gets} GETs of the incident on each log (API, page) ...")
        for key, url in (("get_api_ms", "status_url"), ("get_page_ms", "page_url")):
            paths = {p: local_path(refs[p][0][url]) for p in PHASES}
            got = await get_latencies(clients, paths, args.gets)
            result[key] = {p: pl.summary_ms(v) for p, v in got.items()}
        result["log_size"] = {p: await last_seq(s) for p, s in stacks.items()}
    finally:
        for c in clients.values():
            await c.aclose()
    result["logs"] = str(work)
    return result


def rows(r: dict[str, Any]) -> list[tuple[str, float, float]]:
    up = r["startup_s"]
    out = [(f"{n} start-up → ready (s)", up["empty"][n], up["full"][n]) for n in ORDER]
    out += [
        (f"{n} start-up CPU to ready (s)", up["empty"][f"{n}_cpu"], up["full"][f"{n}_cpu"])
        for n in ORDER
    ]
    out.append(
        (
            "ledger resume → caught up (s)",
            up["empty"]["ledger_caught_up"],
            up["full"]["ledger_caught_up"],
        )
    )
    for key, what in (
        ("report_email_ms", "report → 4th email"),
        ("get_api_ms", "GET /api/v1/incidents/{id}"),
        ("get_page_ms", "incident page"),
    ):
        for p in ("p50", "p95"):
            out.append((f"{what} {p} (ms)", r[key]["empty"][p], r[key]["full"][p]))
    return out


def print_report(r: dict[str, Any]) -> bool:
    w = print
    f = r["fill"]
    w("")
    w(f"Flat-log benchmark: an empty log beside one with {r['events']:,} events appended")
    w(
        f"  log sizes: {r['log_size']['empty']:,} vs {r['log_size']['full']:,} events; appended "
        f"at {f['per_s']:,} events/s; durables {', '.join(f['skipped'])} recreated past them"
    )
    w(
        f"  ledger catch-up on the {r['events']:,}: {f['ledger_catch_up']['seconds']} s "
        f"({f['ledger_catch_up']['per_s']:,} events/s)"
    )
    w("")
    w(f"| measure | empty log | {r['events']:,} events | ratio | ≤ {LIMIT}× |")
    w("|---|---|---|---|---|")
    ok = True
    for name, a, b in rows(r):
        ratio = b / a if a > 0 else float("inf")
        passed = ratio <= LIMIT
        ok &= passed
        w(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.2f} | {'PASS' if passed else 'FAIL'} |")
    first = r["first_report_s"]
    w(
        f"  the first report after the restarts (the router reads the last hour's reports, "
        f"and every appended one is in it): {first['empty']:.2f} s vs {first['full']:.2f} s"
    )
    w(f"  stores and logs: {r['logs']}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events appended in phase 2")
    ap.add_argument("--samples", type=int, default=60, help="report -> email samples")
    ap.add_argument("--gets", type=int, default=100, help="GETs of the incident (API, page)")
    ap.add_argument("--restarts", type=int, default=3, help="restarts of each service (median)")
    ap.add_argument("--schools", type=int, default=20, help="schools in the district")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (store, logs)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="dooralert-flat-"))
    (work / "logs").mkdir()
    try:
        result = asyncio.run(amain(args, work))
        ok = print_report(result)
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        return 0 if ok else 1
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        pl.stop_children()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
