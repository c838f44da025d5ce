"""Deadline → escalation: how late the router raises a missed deadline and the backup's email
arrives, on a real nats-server (JetStream message schedules) and a local SMTP sink.

    .venv/bin/python benchmarks/escalation_latency.py [--incidents 5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from services.domain.directory import load_directory
from services.eventlog import connect, provision, read_incident
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, NatsServer, SmtpServer, report

RULES = """
version: 1
routes:
  - name: any
    match: {}
    notify: [law, safety, principal]
    require_ack: [law, safety]
    ack_within: 3s
escalation:
  tiers:
    - notify: backups
      ack_within: 1h
"""


async def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    nats = NatsServer(store=tmp / "nats")
    nats.start()
    smtp = SmtpServer()
    arrivals: dict[str, float] = {}
    orig = smtp.handler.handle_DATA

    async def timed(server, session, envelope):  # type: ignore[no-untyped-def]
        result = await orig(server, session, envelope)
        if "chief@district.example" in envelope.rcpt_tos:
            incident = smtp.received[-1].message["X-Dooralert-Incident"]
            arrivals.setdefault(incident, time.time())
        return result

    smtp.handler.handle_DATA = timed  # type: ignore[method-assign]
    smtp.start()
    cfg = tmp / "config"
    cfg.mkdir()
    shutil.copy(EXAMPLES / "district.yaml", cfg / "district.yaml")
    (cfg / "rules.yaml").write_text(RULES)
    settings = Settings(nats_url=nats.url, config_dir=cfg, smtp_port=smtp.port)
    nc = await connect(nats.url, name="bench")
    js = nc.jetstream()
    await provision(js)
    directory = load_directory(cfg)
    brokers = [
        router_broker(settings, rules=load_rules(cfg), directory=directory),
        notifier_broker(settings, directory=directory),
    ]
    for b in brokers:
        await b.start()
    app = create_app(settings, directory=directory)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://x"
            ) as client,
        ):
            ids = []
            for _ in range(n):
                r = await client.post(
                    "/api/v1/encounters",
                    json=report(),
                    headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
                )
                ids.append(r.json()["incident_id"])
                await asyncio.sleep(0.3)
            deadline = time.time() + 30
            while len(arrivals) < n and time.time() < deadline:
                await asyncio.sleep(0.1)
        raised_lag, email_lag = [], []
        for incident_id in ids:
            events = await read_incident(js, incident_id)
            decided = next(e for e in events if e.type == "escalation.decided")
            raised = next(e for e in events if e.type == "escalation.raised")
            due = decided.data.ack_deadline.timestamp()
            raised_lag.append(raised.occurred_at.timestamp() - due)
            email_lag.append(arrivals[incident_id] - due)
        print(f"incidents: {n}; ack_within 3s")
        for name, xs in (
            ("deadline -> escalation.raised", raised_lag),
            ("deadline -> backup's email accepted", email_lag),
        ):
            print(f"{name:<38} median {statistics.median(xs):.3f}s  max {max(xs):.3f}s")
    finally:
        for b in brokers:
            await b.stop()
        await nc.close()
        smtp.stop()
        nats.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=5)
    asyncio.run(main(parser.parse_args().incidents))
