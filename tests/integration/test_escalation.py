"""Acknowledgements, durable deadlines, follow-ups and patterns on a real nats-server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.domain.directory import load_directory
from services.domain.incident import fold
from services.domain.tokens import AckClaim, Keyring, ViewClaim, ack_token, view_token
from services.eventlog import read_incident, read_messages
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY, REPO, eventually, report

FAST_RULES = """
version: 1
routes:
  - name: any-encounter
    match: {}
    notify: [law, safety, principal]
    require_ack: [law, safety]
    ack_within: 2s
    severity: high
escalation:
  tiers:
    - notify: backups
      ack_within: 2s
    - notify: [leadership]
      ack_within: 2s
patterns:
  - name: two-schools
    min_encounters: 2
    within: 60m
    notify: [leadership]
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    shutil.copy(EXAMPLES / "district.yaml", d / "district.yaml")
    (d / "rules.yaml").write_text(FAST_RULES)
    return d


@pytest.fixture
def fast(settings: Settings, config_dir: Path) -> Settings:
    return settings.model_copy(update={"config_dir": config_dir})


@pytest.fixture
async def client(fast: Settings, js) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(fast, directory=load_directory(fast.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


async def start_services(fast: Settings, *, router: bool = True):  # type: ignore[no-untyped-def]
    directory = load_directory(fast.config_dir)
    brokers = [notifier_broker(fast, directory=directory)]
    if router:
        brokers.append(router_broker(fast, rules=load_rules(fast.config_dir), directory=directory))
    for b in brokers:
        await b.start()
    return brokers


def router_process(fast: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": fast.nats_url,
        "DOORALERT_CONFIG_DIR": str(fast.config_dir),
        "DOORALERT_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "router"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def post_report(client: httpx.AsyncClient, key: str = HAMLINE_KEY, **fields) -> str:  # type: ignore[no-untyped-def]
    resp = await client.post(
        "/api/v1/encounters", json=report(**fields), headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["incident_id"])


async def events_of(js, incident_id: str, type_: str):  # type: ignore[no-untyped-def]
    return [e for e in await read_incident(js, incident_id) if e.type == type_]


def token_for(
    fast: Settings,
    incident_id: str,
    role: str,
    contact: str,
    school: str = "hamline",
    *,
    expires_in: float = 3600,
) -> str:
    exp = int((datetime.now(UTC) + timedelta(seconds=expires_in)).timestamp())
    return ack_token(
        Keyring.of(fast.signing_keys()), AckClaim(incident_id, school, role, contact, "n", exp)
    )


async def test_missed_deadline_escalates_to_backups_then_leadership(fast, js, client, smtp):
    brokers = await start_services(fast)
    try:
        incident_id = await post_report(client)
        raised = await eventually(
            lambda: _count(js, incident_id, "escalation.raised", 2), timeout=15
        )
        tier1, tier2 = sorted(raised, key=lambda e: e.data.tier)
        assert tier1.data.missing_roles == ["law", "safety"]
        # law-dept's backup is law-counsel, already told as law; safety-office's is the chief.
        assert {r.contact_id for r in tier1.data.recipients} == {"chief-of-schools"}
        assert {r.contact_id for r in tier2.data.recipients} == {"chief-of-schools"}
        await eventually(
            lambda: sum("chief@district.example" in m.rcpt for m in smtp.received) == 2
        )
    finally:
        for b in brokers:
            await b.stop()


async def test_acknowledged_in_time_means_no_escalation(fast, js, client, smtp):
    brokers = await start_services(fast)
    try:
        incident_id = await post_report(client)
        for role, contact in (("law", "law-dept"), ("safety", "safety-office")):
            resp = await client.post(
                f"/api/v1/incidents/{incident_id}/ack",
                json={"token": token_for(fast, incident_id, role, contact)},
            )
            assert resp.status_code == 202, resp.text
        await asyncio.sleep(4.5)  # past the deadline and the first tier's
        assert await events_of(js, incident_id, "escalation.raised") == []
        state = (
            await client.get(
                f"/api/v1/incidents/{incident_id}",
                headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
            )
        ).json()
        roles = {r["role"]: r for r in state["required_roles"]}
        assert roles["law"]["acknowledged_by"] == "law-dept" and roles["law"]["notified_at"]
        assert roles["safety"]["acknowledged_at"] is not None
        now = int(time.time())
        claim = ViewClaim(incident_id, "law-dept", "n", True, now, now + 3600)
        token = view_token(Keyring.of(fast.signing_keys()), claim)
        page = await client.get(f"/incidents/{incident_id}?token={token}")
        table = page.text.split('id="required-roles"')[1].split("</table>")[0]
        assert "Law Department (on call)" in table and "Office of Safety and Security" in table
    finally:
        for b in brokers:
            await b.stop()


async def test_router_killed_before_the_deadline_still_escalates_exactly_once(
    fast, js, client, smtp
):
    brokers = await start_services(fast, router=False)
    proc = router_process(fast)
    try:
        incident_id = await post_report(client)
        await eventually(lambda: _count(js, incident_id, "escalation.decided", 1), timeout=15)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await asyncio.sleep(3)  # the deadline passes while no router runs
        assert await events_of(js, incident_id, "escalation.raised") == []
        proc = router_process(fast)
        await eventually(lambda: _count(js, incident_id, "escalation.raised", 1), timeout=15)
        await asyncio.sleep(1)
        tiers = [e.data.tier for e in await events_of(js, incident_id, "escalation.raised")]
        assert tiers.count(1) == 1
    finally:
        proc.kill()
        proc.wait()
        for b in brokers:
            await b.stop()


async def test_two_router_instances_escalate_exactly_once(fast, js, client, smtp):
    brokers = await start_services(fast)  # one router in-process
    second = router_process(fast)  # and one more
    try:
        incident_ids = [await post_report(client) for _ in range(3)]
        for incident_id in incident_ids:
            await eventually(
                lambda i=incident_id: _count(js, i, "escalation.raised", 2), timeout=20
            )
        await asyncio.sleep(1)
        for incident_id in incident_ids:
            tiers = [e.data.tier for e in await events_of(js, incident_id, "escalation.raised")]
            assert sorted(tiers) == [1, 2]
            assert len(await events_of(js, incident_id, "escalation.decided")) == 1
            requested = await events_of(js, incident_id, "notification.requested")
            ids = [e.data.notification_id for e in requested]
            assert len(ids) == len(set(ids))
    finally:
        second.kill()
        second.wait()
        for b in brokers:
            await b.stop()


async def test_resolving_stops_escalation_and_tells_everyone(fast, js, client, smtp):
    brokers = await start_services(fast)
    try:
        incident_id = await post_report(client)
        await eventually(lambda: len(smtp.received) == 4)
        resp = await client.post(
            f"/api/v1/incidents/{incident_id}/resolve",
            json={},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert resp.status_code == 202
        await eventually(lambda: len(smtp.received) == 8)
        await asyncio.sleep(4)
        assert await events_of(js, incident_id, "escalation.raised") == []
        again = await client.post(
            f"/api/v1/incidents/{incident_id}/resolve",
            json={},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert again.status_code == 409
    finally:
        for b in brokers:
            await b.stop()


async def test_update_reaches_everyone_already_notified(fast, js, client, smtp):
    brokers = await start_services(fast)
    try:
        incident_id = await post_report(client)
        await eventually(lambda: len(smtp.received) == 4)
        bad = await client.post(
            f"/api/v1/incidents/{incident_id}/updates",
            json={"immigration_status": "x"},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert bad.status_code == 422
        other = await client.post(
            f"/api/v1/incidents/{incident_id}/updates",
            json={"entry": "left"},
            headers={"Authorization": f"Bearer {LINCOLN_KEY}"},
        )
        assert other.status_code == 403
        resp = await client.post(
            f"/api/v1/incidents/{incident_id}/updates",
            json={"entry": "left", "document": "judicial_warrant"},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert resp.status_code == 202
        await eventually(lambda: len(smtp.received) == 8)
        state = fold(await read_incident(js, incident_id))
        assert state is not None and state.report is not None
        assert state.report.entry == "left" and state.updates[0]["document"] == "judicial_warrant"
    finally:
        for b in brokers:
            await b.stop()


async def test_the_link_in_the_email_acknowledges_and_follow_ups_say_what_they_are(
    fast, js, client, smtp
):
    brokers = await start_services(fast)
    try:
        incident_id = await post_report(client)
        await eventually(lambda: len(smtp.received) == 4)
        law = next(m.message for m in smtp.received if "law-oncall@district.example" in m.rcpt)
        text = law.get_body(("plain",)).get_content()
        ack_url = next(
            line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Acknowledge")
        )
        path = ack_url.split("http://127.0.0.1:8080")[1]
        assert (await client.post(path)).status_code == 200
        [ack] = await events_of(js, incident_id, "incident.acknowledged")
        assert ack.data.role == "law" and ack.data.contact_id == "law-dept"

        await client.post(
            f"/api/v1/incidents/{incident_id}/updates",
            json={"entry": "left"},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        await eventually(lambda: len(smtp.received) == 8)
        update = next(
            m.message for m in smtp.received[4:] if "law-oncall@district.example" in m.rcpt
        )
        assert update["Subject"].startswith("UPDATE: ")
        body = update.get_body(("plain",)).get_content()
        assert "Agents left" in body and "Acknowledge" not in body
    finally:
        for b in brokers:
            await b.stop()


async def test_ack_link_confirms_on_get_records_on_post_and_refuses_reuse(fast, js, client):
    incident_id = await post_report(client)
    token = token_for(fast, incident_id, "law", "law-dept")
    page = await client.get(f"/ack/{token}")
    assert page.status_code == 200 and "I confirm" in page.text
    # The page says which incident: its school, where, and that nobody has confirmed yet.
    assert "Hamline Elementary" in page.text and "Nobody has confirmed yet" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert await events_of(js, incident_id, "incident.acknowledged") == []  # GET never acks
    done = await client.post(f"/ack/{token}")
    assert done.status_code == 200 and "recorded" in done.text
    reused = await client.post(f"/ack/{token}")
    assert reused.status_code == 409 and "already confirmed" in reused.text.lower()
    assert len(await events_of(js, incident_id, "incident.acknowledged")) == 1

    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert (await client.post(f"/ack/{forged}")).status_code == 400
    altered = (
        token_for(fast, incident_id, "safety", "law-dept").split(".")[0] + "." + token.split(".")[1]
    )
    assert (await client.post(f"/ack/{altered}")).status_code == 400
    expired = token_for(fast, incident_id, "safety", "safety-office", expires_in=-1)
    resp = await client.post(f"/ack/{expired}")
    assert resp.status_code == 400 and "This confirmation link has expired" in resp.text
    assert "sign-in" not in resp.text.lower()
    assert (await client.post("/ack/garbage")).status_code == 400
    assert len(await events_of(js, incident_id, "incident.acknowledged")) == 1


async def test_encounters_at_two_schools_raise_one_pattern_alert(fast, js, client, smtp):
    brokers = await start_services(fast)
    try:
        await post_report(client)
        await post_report(client, key=LINCOLN_KEY, school_id="lincoln-park")
        await eventually(lambda: _patterns(js, 1), timeout=10)
        await post_report(client)
        await asyncio.sleep(1.5)
        [pattern] = await _patterns(js, 1)
        assert sorted(pattern.data.school_ids) == ["hamline", "lincoln-park"]
        assert [r.contact_id for r in pattern.data.recipients] == ["chief-of-schools"]
        await eventually(
            lambda: any("2 schools" in str(m.message["Subject"]) for m in smtp.received)
        )
    finally:
        for b in brokers:
            await b.stop()


async def _patterns(js, n):  # type: ignore[no-untyped-def]
    msgs = await read_messages(js, "dooralert.district.*.pattern.detected")
    return [m.event() for m in msgs] if len(msgs) >= n else None


async def _count(js, incident_id, type_, n):  # type: ignore[no-untyped-def]
    found = await events_of(js, incident_id, type_)
    return found if len(found) >= n else None


async def test_replay_rebuilds_exactly_the_live_state_of_every_incident(fast, js, client, smtp):
    import json

    from services.audit.replay import replay

    brokers = await start_services(fast)
    try:
        acked = await post_report(client)
        escalated = await post_report(client, purpose="student")
        resolved = await post_report(client, key=LINCOLN_KEY, school_id="lincoln-park")
        await client.post(
            f"/api/v1/incidents/{acked}/ack",
            json={"token": token_for(fast, acked, "law", "law-dept")},
        )
        await client.post(
            f"/api/v1/incidents/{resolved}/resolve",
            json={"note": "left"},
            headers={"Authorization": f"Bearer {LINCOLN_KEY}"},
        )
        await eventually(lambda: _count(js, escalated, "escalation.raised", 1), timeout=15)
        await asyncio.sleep(1.0)  # let deliveries settle
    finally:
        for b in brokers:
            await b.stop()
    text, code = replay(await read_messages(js), incident=None, as_json=True)
    assert code == 0
    replayed = {doc["incident_id"]: doc["state"] for doc in map(json.loads, text.splitlines())}
    for incident_id, key in (
        (acked, HAMLINE_KEY),
        (escalated, HAMLINE_KEY),
        (resolved, LINCOLN_KEY),
    ):
        live = (
            await client.get(
                f"/api/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {key}"}
            )
        ).json()
        assert replayed[incident_id] == live
    assert replayed[resolved]["status"] == "resolved"
    assert replayed[acked]["acknowledgements"][0]["contact_id"] == "law-dept"
    assert replayed[escalated]["escalations"]
