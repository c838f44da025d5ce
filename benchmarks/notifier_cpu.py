"""The notifier's CPU per email, alone: nats-server, the SMTP sink and ONE notifier process.

    .venv/bin/python benchmarks/notifier_cpu.py [--incidents 400] [--rounds 3]

The peer benchmark (peer.py) runs every service at once, so on a shared 2-core machine the
notifier's CPU per email there moves by ±30% with the load. Here only the notifier consumes:
each round publishes --incidents incidents (a report whose notes are sealed under a key in the
notes-key bucket, then three email requests, as the router writes them) and measures the
notifier's CPU seconds (/proc/<pid>/stat) from the first publish to the last email accepted by
benchmarks/smtp_sink.py (its own process). Compare two versions of the code round by round,
each started from its own tree, rather than against a number from another day.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nats.js import JetStreamContext  # noqa: E402

from benchmarks.pipeline import cpu_seconds, free_port  # noqa: E402
from services.domain.sealing import encode_key, new_key, seal  # noqa: E402
from services.eventlog import connect, provision, publish_event  # noqa: E402
from services.eventlog.notekeys import JetStreamNoteKeys  # noqa: E402
from tests.fixtures.notifier_support import encounter, request  # noqa: E402
from tests.support import EXAMPLES, TEST_SECRET, NatsServer  # noqa: E402

# The example district's first-tier email contacts for a Hamline report.
CONTACTS = [("law-dept", "law"), ("safety-office", "safety"), ("principal-hamline", "principal")]
NOTES = "Two agents in plain clothes asked for the office; kept outside, law called."


class Sink:
    """benchmarks/smtp_sink.py in its own process, counting the messages it accepted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "smtp_sink.py"), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        self.lines = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            self.lines += 1

    async def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.lines < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.lines >= count

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def publish_incidents(
    js: JetStreamContext, keys: JetStreamNoteKeys, first: int, n: int
) -> None:
    for i in range(first, first + n):
        incident = f"cpu-{i}"
        key = new_key(incident, now=datetime.now(UTC))
        await keys.create_if_absent(incident, encode_key(key))
        reported = encounter(incident)
        sealed = seal(NOTES, key, incident_id=incident, event_id=reported.id, field="notes")
        data = reported.data.model_copy(update={"notes_sealed": sealed})
        await publish_event(js, reported.model_copy(update={"data": data}))
        await asyncio.gather(
            *(publish_event(js, request(incident, c, role=r)) for c, r in CONTACTS)
        )


def start_notifier(work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(work / "notifier.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "notifier"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def run(incidents: int, rounds: int) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="dooralert-notifier-cpu-"))
    nats = NatsServer(store=work / "nats")
    nats.start()
    sink = Sink()
    nc = await connect(nats.url, name="notifier-cpu")
    js = nc.jetstream()
    await provision(js)
    keys = await JetStreamNoteKeys.open(js)
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats.url,
        "DOORALERT_SMTP_HOST": "127.0.0.1",
        "DOORALERT_SMTP_PORT": str(sink.port),
        "DOORALERT_CONFIG_DIR": str(EXAMPLES),
        "DOORALERT_SECRET_KEYS": TEST_SECRET,
        "DOORALERT_LOG_FORMAT": "json",
        "DOORALERT_METRICS_PORT": str(free_port()),
        "DOORALERT_CONSUMER_CHECK_SECONDS": "0",
    }
    notifier = start_notifier(work, env)
    out: list[float] = []
    try:
        await asyncio.sleep(2.0)
        await publish_incidents(js, keys, 0, 5)  # warm-up: connections, templates, pool
        if not await sink.wait(15, 30):
            raise RuntimeError(f"warm-up emails not accepted; see {work / 'notifier.log'}")
        await asyncio.sleep(0.5)
        for r in range(rounds):
            before, start = cpu_seconds(notifier.pid), sink.lines
            await publish_incidents(js, keys, 5 + r * incidents, incidents)
            emails = len(CONTACTS) * incidents
            if not await sink.wait(start + emails, 300):
                raise RuntimeError(f"round {r + 1}: {sink.lines - start} of {emails} emails")
            per_email = (cpu_seconds(notifier.pid) - before) / emails
            out.append(per_email)
            print(
                f"round {r + 1}: {emails} emails, notifier {1000 * per_email:.2f} ms CPU/email "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        notifier.terminate()
        notifier.wait(20)
        sink.stop()
        await nc.close()
        nats.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--incidents", type=int, default=400, help="incidents per round (3 emails)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results = asyncio.run(run(args.incidents, args.rounds))
    print(f"notifier CPU/email, min of {len(results)}: {1000 * min(results):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
