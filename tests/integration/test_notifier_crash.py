"""The notifier as a real process, SIGKILLed mid-burst and restarted: every recipient gets
every alert. A duplicate (the same Message-ID twice) happens only for a send the SMTP server
accepted in the instant before the kill, before its delivery record was written: with one
worker that is at most one per crash; with N concurrent workers at most N per crash (measured:
1-2 per crash with 16 workers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.eventlog import STREAM, SUBJECT_PREFIX, publish_event
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import encounter, request
from tests.support import EXAMPLES, REPO, TEST_SECRET, eventually

INCIDENTS = 200
WORKERS = Settings().notifier_workers  # in-flight sends the kill can interrupt
# Example config contacts (email only): one alert each per incident.
CONTACTS = [("law-dept", "law"), ("safety-office", "safety"), ("principal-hamline", "principal")]


def spawn(nats_url: str, smtp_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats_url,
        "DOORALERT_SMTP_HOST": "127.0.0.1",
        "DOORALERT_SMTP_PORT": str(smtp_port),
        "DOORALERT_CONFIG_DIR": str(EXAMPLES),
        "DOORALERT_SECRET_KEYS": TEST_SECRET,
        "DOORALERT_LOG_LEVEL": "warning",
        "DOORALERT_RETRY_BASE_SECONDS": "0.05",
        "DOORALERT_RETRY_MAX_SECONDS": "0.5",
        # The test shortens the consumer's ack_wait (below), which the notifier's consumer
        # watch would rightly stop on as drift.
        "DOORALERT_CONSUMER_CHECK_SECONDS": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "notifier"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkill_mid_burst_loses_no_alert_and_duplicates_at_most_in_flight(
    js: Any, nats_server: Any, smtp: Any
) -> None:
    # Test-only: a short ack_wait so messages held by the killed process come back in seconds
    # instead of the production 60 s. Everything else is the provisioned consumer.
    await js.delete_consumer(STREAM, "notifier")
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name="notifier",
            filter_subject=f"{SUBJECT_PREFIX}.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=2.0,
            max_deliver=100,
            max_ack_pending=1000,
        ),
    )
    t0 = time.monotonic()
    expected = INCIDENTS * len(CONTACTS)
    for i in range(INCIDENTS):
        await publish_event(js, encounter(f"burst-{i}"))
        for cid, role in CONTACTS:
            await publish_event(js, request(f"burst-{i}", cid, role=role))
    published = time.monotonic() - t0

    crashes = 0
    proc = spawn(nats_server.url, smtp.port)
    try:
        await eventually(lambda: len(smtp.received) >= expected // 3, timeout=20, every=0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        crashes += 1
        at_kill = len(smtp.received)
        proc = spawn(nats_server.url, smtp.port)
        ids = lambda: {m.message["Message-ID"] for m in smtp.received}  # noqa: E731
        await eventually(lambda: len(ids()) == expected, timeout=25)
        await asyncio.sleep(1.0)  # let any late redelivery show up as a duplicate
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    elapsed = time.monotonic() - t0

    counts = Counter(m.message["Message-ID"] for m in smtp.received)
    duplicates = sum(n - 1 for n in counts.values())
    per_recipient = Counter(r for m in smtp.received for r in m.rcpt)
    print(
        f"\ncrash burst: {INCIDENTS} incidents x {len(CONTACTS)} recipients = {expected} "
        f"alerts; published in {published:.1f}s; killed at {at_kill} received; "
        f"{crashes} crash(es); {len(smtp.received)} emails received, {len(counts)} unique, "
        f"{duplicates} duplicate(s); total {elapsed:.1f}s"
    )
    assert len(counts) == expected
    assert all(per_recipient[addr] >= INCIDENTS for addr in per_recipient) and len(
        per_recipient
    ) == len(CONTACTS)
    assert duplicates <= crashes * WORKERS
