"""The pipeline on a 3-node JetStream cluster survives losing the DOORALERT stream leader.

Intake (in-process ASGI), router and notifier run connected to all three nodes (a
comma-separated DOORALERT_NATS_URL). 30 reports go out as a burst; once 10 are accepted the
node leading DOORALERT is SIGKILLed. Every report must still be accepted - 202 at once or
after the client retries a 503 with the same Idempotency-Key - every incident's law, safety
and principal emails arrive exactly once per recipient, and the log holds each event once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.domain.directory import load_directory
from services.eventlog import (
    STREAM,
    connect,
    consumer_configs,
    read_messages,
)
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.cluster_support import (
    NatsCluster,
    move_leaders_off,
    provision_replicated,
    stream_leader,
)
from tests.support import EXAMPLES, HAMLINE_KEY, TEST_SECRET, SmtpServer, eventually, report

BASE_RECIPIENTS = sorted(
    [
        "law-oncall@district.example",
        "deputy-counsel@district.example",
        "safety-desk@district.example",
        "principal@hamline.district.example",
    ]
)
REPORTS = 30
KILL_AFTER = 10  # accepted reports before the stream leader is killed
SPACING = 0.05  # seconds between report starts: a burst that is still going at the kill
NOTIFIER_ACK_WAIT = (
    next(c.ack_wait for _, c in consumer_configs() if c.durable_name == "notifier") or 60.0
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path / "cluster")
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def cluster_js(cluster: NatsCluster) -> AsyncIterator[object]:
    await cluster.wait_for_meta_leader()
    nc = await connect(cluster.url, name="tests")
    await provision_replicated(nc)
    js = nc.jetstream()
    yield js
    await nc.close()


async def probe(js: Any, stop: asyncio.Event, log: list[tuple[float, float, bool]]) -> None:
    """Publish to DOORALERT every 50 ms with no retry: when exactly the stream took writes.
    Probe subjects (dooralert.probe.*) match no service's consumer; the checks skip them."""
    k = 0
    while not stop.is_set():
        k += 1
        t0 = time.monotonic()
        try:
            await js.publish(
                f"dooralert.probe.p{k}.probe",
                b"",
                stream=STREAM,
                timeout=0.5,
                headers={"Nats-Msg-Id": f"probe-{k}"},
            )
            ok = True
        except Exception:  # noqa: BLE001 - any failure is part of the outage
            ok = False
        log.append((t0, time.monotonic(), ok))
        await asyncio.sleep(0.05)


@dataclass
class Attempt:
    n: int
    start: float
    end: float
    status: int


async def test_pipeline_survives_killing_the_stream_leader(cluster, cluster_js, smtp: SmtpServer):
    js = cluster_js
    info = await js.stream_info(STREAM)
    assert info.config.num_replicas == 3
    assert info.cluster is not None and len(info.cluster.replicas or []) == 2

    settings = Settings(
        nats_url=cluster.url,  # comma-separated: all three nodes
        config_dir=EXAMPLES,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        max_attempts=4,
        # A burst from one school, beyond the per-school limit staff ever reach.
        rate_limit_reports_per_minute=0,
    )
    assert settings.nats_url == cluster.urls
    directory = load_directory(EXAMPLES)
    router = router_broker(settings, rules=load_rules(EXAMPLES), directory=directory)
    notifier = notifier_broker(settings, directory=directory)
    app = create_app(settings, directory=directory)

    attempts: list[Attempt] = []
    accepted: dict[int, str] = {}  # report number -> incident id
    created: Counter[str] = Counter()
    killed: dict[str, float | str] = {}

    async def send(client: httpx.AsyncClient, n: int) -> None:
        """One report; a 503 is retried with the same Idempotency-Key, as a client would."""
        body = report(location=f"Door {n}")
        deadline = time.monotonic() + 40
        while True:
            t0 = time.monotonic()
            resp = await client.post(
                "/api/v1/encounters",
                json=body,
                headers={"Authorization": f"Bearer {HAMLINE_KEY}", "Idempotency-Key": f"burst-{n}"},
            )
            attempts.append(Attempt(n, t0, time.monotonic(), resp.status_code))
            if resp.status_code == 202:
                accepted[n] = resp.json()["incident_id"]
                created[resp.json()["incident_id"]] += bool(resp.json()["created"])
                return
            assert resp.status_code == 503, resp.text
            assert time.monotonic() < deadline, f"report {n} still refused: {resp.text}"
            await asyncio.sleep(0.2)

    # The node to kill leads DOORALERT and nothing else: the other streams (the deliveries
    # KV bucket, timers, checkpoints) and the durable consumers get leaders elsewhere first,
    # so this test measures exactly the loss of the event log's leader.
    target = await stream_leader(js, STREAM)
    moved = await move_leaders_off(js._nc, target, keep=STREAM)

    async def kill_leader_mid_burst() -> None:
        await eventually(lambda: len(accepted) >= KILL_AFTER, timeout=20, every=0.005)
        leader = await stream_leader(js, STREAM)
        assert leader == target
        cluster.node(leader).kill()
        killed.update(node=leader, at=time.monotonic(), accepted=len(accepted))

    probe_nc = await connect(cluster.url, name="probe")
    probes: list[tuple[float, float, bool]] = []
    stop_probe = asyncio.Event()
    prober = asyncio.create_task(probe(probe_nc.jetstream(), stop_probe, probes))
    await router.start()
    await notifier.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://intake", timeout=60
            ) as client:
                killer = asyncio.create_task(kill_leader_mid_burst())
                senders = []
                for n in range(REPORTS):
                    senders.append(asyncio.create_task(send(client, n)))
                    await asyncio.sleep(SPACING)
                await asyncio.gather(*senders)
                await killer
                stop_probe.set()
                await prober

                # Every report accepted, each incident created once.
                assert sorted(accepted) == list(range(REPORTS))
                incidents = set(accepted.values())
                assert len(incidents) == REPORTS
                assert all(created[i] == 1 for i in incidents), created

                # Every incident's emails, exactly once per recipient.
                def by_incident() -> dict[str, list[str]]:
                    out: dict[str, list[str]] = {}
                    for m in smtp.received:
                        out.setdefault(m.message["X-Dooralert-Incident"], []).extend(m.rcpt)
                    return out

                # Usually within seconds of the new leader. But a notifier ack or nack sent
                # while the `notifier` consumer has no leader is lost, and that message comes
                # back only after the consumer's ack_wait (60 s): wait that long, never less.
                await eventually(
                    lambda: len(smtp.received) >= REPORTS * len(BASE_RECIPIENTS),
                    timeout=NOTIFIER_ACK_WAIT + 20,
                    every=0.1,
                )
                t_emails = time.monotonic()

                # Every request recorded as sent, so no delivery is still in flight.
                async def all_recorded() -> bool:
                    try:
                        events = [m.subject for m in await read_messages(js)]
                    except Exception:  # noqa: BLE001 - the cluster may still be settling
                        return False
                    return sum(s.endswith(".notification.sent") for s in events) >= 4 * REPORTS

                await eventually(all_recorded, timeout=30, every=0.5)
                got = by_incident()
                assert set(got) == incidents
                assert all(sorted(r) == BASE_RECIPIENTS for r in got.values()), {
                    i: r for i, r in got.items() if sorted(r) != BASE_RECIPIENTS
                }

                # The log holds each event once.
                messages = [
                    m for m in await read_messages(js) if m.subject.split(".")[1] != "probe"
                ]
                ids = Counter(m.event().id for m in messages)
                assert not [i for i, c in ids.items() if c > 1]
                kinds = Counter(".".join(m.subject.split(".")[3:]) for m in messages)
                assert kinds["encounter.reported"] == REPORTS
                assert kinds["notification.requested"] == 4 * REPORTS
                assert kinds["notification.sent"] == 4 * REPORTS
                # A delivery whose KV check or outcome publish hit the failover may be recorded
                # as failed and retried - never failed for good.
                failed = [m.event() for m in messages if m.subject.endswith(".notification.failed")]
                assert not [f for f in failed if f.data.permanent]  # type: ignore[attr-defined]
                new_leader = (await js.stream_info(STREAM)).cluster.leader
    finally:
        stop_probe.set()
        await notifier.stop()
        await router.stop()
        await probe_nc.close()

    # The write outage at the stream: first failed probe publish after the kill -> next success.
    t_kill = float(killed["at"])
    p_fail = min(t0 for t0, t1, ok in probes if not ok and t1 >= t_kill)
    p_ok = min(t1 for t0, t1, ok in probes if ok and t0 >= p_fail)

    # The write outage as the clients saw it: from the first failed (503) or slow (> 0.5 s)
    # request after the kill to the first 202 of a request started after that.
    bad = [a for a in attempts if a.end > t_kill and (a.status != 202 or a.end - a.start > 0.5)]
    assert bad, "the kill did not disturb any request: it was not mid-burst"
    t_fail = min(a.start for a in bad)
    t_ok = min(a.end for a in attempts if a.status == 202 and a.start >= t_fail)
    refused = [a for a in attempts if a.status == 503]
    slowest = max(attempts, key=lambda a: a.end - a.start)
    print(
        f"\ncluster failover: killed leader {killed['node']} after {killed['accepted']} "
        f"accepted reports (first moved off it: {', '.join(moved) or 'nothing'}); "
        f"new leader {new_leader}\n"
        f"  stream write outage {p_ok - p_fail:.2f} s (first failed probe publish -> next "
        f"success; kill -> next success {p_ok - t_kill:.2f} s)\n"
        f"  intake outage {t_ok - t_fail:.2f} s (first failed/slow request -> next 202); "
        f"kill -> next 202 {t_ok - t_kill:.2f} s\n"
        f"  {len(attempts)} requests for {REPORTS} reports: {len(attempts) - len(refused)} x 202, "
        f"{len(refused)} x 503 retried with the same Idempotency-Key "
        f"({len({a.n for a in refused})} reports); slowest request "
        f"{slowest.end - slowest.start:.2f} s\n"
        f"  all emails in {t_emails - t_kill:.2f} s after the kill; "
        f"{len(smtp.received)} emails for {REPORTS} incidents ({len(BASE_RECIPIENTS)} each, "
        f"once per recipient), {len(messages)} events, no duplicate ids, "
        f"{len(failed)} transient notification.failed"
    )
    assert p_ok - p_fail < settings.publish_retry_seconds


def test_shipped_cluster_configs_are_valid_and_route_to_each_other() -> None:
    """deploy/nats/cluster/node-*.conf parse (nats-server -t) and form one cluster: unique
    names, ports and stores, each routing to the other two nodes' cluster ports."""
    import re
    import subprocess

    from services.cli.dev import nats_server_binary

    confs = sorted((EXAMPLES.parent / "nats" / "cluster").glob("node-*.conf"))
    assert [c.name for c in confs] == ["node-a.conf", "node-b.conf", "node-c.conf"]
    nodes = {}
    for conf in confs:
        check = subprocess.run(
            [nats_server_binary(), "-c", str(conf), "-t"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert check.returncode == 0, check.stderr + check.stdout
        text = re.sub(r"#.*", "", conf.read_text())
        cluster = text[text.index("cluster {") :]

        def find(pattern: str, where: str = text, name: str = conf.name) -> str:
            found = re.search(pattern, where, re.M)
            assert found, f"{name}: no {pattern}"
            return found.group(1)

        nodes[conf.name] = {
            "name": find(r"server_name:\s*(\S+)"),
            "listen": find(r'^listen:\s*"([^"]+)"'),
            "store": find(r'store_dir:\s*"([^"]+)"'),
            "cluster": find(r'listen:\s*"([^"]+)"', cluster),
            "routes": set(re.findall(r'"nats://([^"]+)"', cluster)),
        }
    for key in ("name", "listen", "store", "cluster"):
        assert len({n[key] for n in nodes.values()}) == 3, key
    for name, n in nodes.items():
        others = {o["cluster"] for k, o in nodes.items() if k != name}
        assert n["routes"] == others, name
