"""The router's CPU per report, alone: nats-server and ONE router process.

    .venv/bin/python benchmarks/router_cpu.py [--reports 600] [--rounds 3] [--rate R]
        [--tree DIR ...]

Each round starts a nats-server and a router (from each --tree in turn, the order alternating
round by round: compare two versions of the code, each checked out in its own tree), publishes
--reports encounter reports at once, or --rate a second (the peer benchmark's burst: 600
schools, whose reports intake stores over 2-3 s), and measures the router's CPU seconds
(/proc/<pid>/stat) from the first publish until every report's decision, four requests and
tier-1 deadline are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nats.js import JetStreamContext  # noqa: E402

from benchmarks.peer_parts import make_district  # noqa: E402
from benchmarks.pipeline import cpu_seconds, free_port  # noqa: E402
from schemas.events import EncounterReported, derive_id  # noqa: E402
from schemas.report import EncounterReport  # noqa: E402
from services.eventlog import STREAM, TIMERS_STREAM, connect, provision, publish_event  # noqa: E402
from tests.support import TEST_SECRET, NatsServer, report, stored_report  # noqa: E402

PER_REPORT = 5  # decision + 4 requests (law, law counsel, safety, principal)


def encounter(incident_id: str, school_id: str) -> EncounterReported:
    at = datetime.now(UTC)
    r = EncounterReport.model_validate({**report(school_id=school_id), "occurred_at": at})
    return EncounterReported(
        id=derive_id(incident_id, "encounter.reported"),
        source="intake",
        incident_id=incident_id,
        school_id=school_id,
        occurred_at=at,
        recorded_at=at,
        correlation_id=incident_id,
        actor="key-bench",
        data=stored_report(r),
    )


async def burst(js: JetStreamContext, tag: str, n: int, schools: int, rate: float = 0) -> None:
    """`n` reports at once, or (`rate` > 0) `rate` a second, as intake stores them."""
    events = [encounter(f"{tag}-{i}", f"school-{i % schools:03d}") for i in range(n)]
    if rate <= 0:
        await asyncio.gather(*(publish_event(js, e) for e in events))
        return
    start, pending = time.monotonic(), []
    for i, e in enumerate(events):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(publish_event(js, e)))
    await asyncio.gather(*pending)


async def stored(js: JetStreamContext) -> tuple[int, int]:
    a = (await js.stream_info(STREAM)).state.messages
    b = (await js.stream_info(TIMERS_STREAM)).state.messages
    return a, b


async def wait_for(js: JetStreamContext, events: int, timers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a, b = await stored(js)
        if a >= events and b >= timers:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"stored {await stored(js)}, wanted {events}/{timers}")


def start_router(tree: Path, work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "services.cli.main", "router"]
    if script := os.environ.get("ROUTER_SCRIPT"):  # e.g. a profiler's wrapper of the router
        argv, env["PYTHONPATH"] = [sys.executable, script], str(tree)
    with open(work / "router.log", "wb") as logf:
        return subprocess.Popen(argv, cwd=tree, env=env, stdout=logf, stderr=subprocess.STDOUT)


async def one(tree: Path, config: Path, reports: int, schools: int, tag: str, rate: float) -> float:
    work = Path(tempfile.mkdtemp(prefix="dooralert-router-cpu-"))
    nats = NatsServer(store=work / "nats")
    nats.start()
    nc = await connect(nats.url, name="router-cpu")
    js = nc.jetstream()
    await provision(js)
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats.url,
        "DOORALERT_CONFIG_DIR": str(config),
        "DOORALERT_SECRET_KEYS": TEST_SECRET,
        "DOORALERT_LOG_FORMAT": "json",
        "DOORALERT_METRICS_PORT": str(free_port()),
        "DOORALERT_CONSUMER_CHECK_SECONDS": "0",
    }
    env.pop("PYTHONPATH", None)
    router = start_router(tree, work, env)
    try:
        await asyncio.sleep(2.5)
        await burst(js, f"warm-{tag}", 20, schools)
        base_events, base_timers = 20, 0
        await wait_for(js, base_events + 20 * PER_REPORT, 20, 30)
        await asyncio.sleep(1.0)  # the pattern detector's rounds settle
        base_events, base_timers = await stored(js)
        before = cpu_seconds(router.pid)
        await burst(js, tag, reports, schools, rate)
        await wait_for(js, base_events + reports * (1 + PER_REPORT), base_timers + reports, 300)
        await asyncio.sleep(0.3)  # the detector's last round after the burst
        return (cpu_seconds(router.pid) - before) / reports
    finally:
        router.terminate()
        router.wait(20)
        await nc.close()
        nats.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=600)
    ap.add_argument("--schools", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tree", action="append", type=Path)
    ap.add_argument(
        "--rate", type=float, default=0, help="reports a second (0: all at once, the default)"
    )
    args = ap.parse_args()
    trees = args.tree or [REPO]
    config = Path(tempfile.mkdtemp(prefix="dooralert-router-cpu-config-")) / "config"
    make_district(config, args.schools)
    results: dict[Path, list[float]] = {t: [] for t in trees}
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else list(reversed(trees))
        for tree in order:
            per = await one(tree, config, args.reports, args.schools, f"r{r}", args.rate)
            results[tree].append(per)
            print(
                f"round {r + 1} {tree}: {1000 * per:.3f} ms CPU/report "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    for tree, values in results.items():
        print(
            f"{tree}: median {1000 * statistics.median(values):.3f} ms CPU/report "
            f"({', '.join(f'{1000 * v:.3f}' for v in values)})"
        )


if __name__ == "__main__":
    asyncio.run(main())
