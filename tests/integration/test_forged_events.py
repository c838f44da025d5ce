"""No forged acknowledgement through another subject (issue 10, DESIGN §4), on a real
nats-server started with deploy/nats/server.conf.

Every service user that may publish events (intake, router, notifier) publishes
`incident.acknowledged` payloads for law and safety on a subject it IS allowed to publish on.
The server stores them; the incident must not show them, and the missed deadline must still
escalate (the router's deadline reads the same fold).
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from schemas.envelope import originating
from schemas.events import IncidentAcknowledged, IncidentAcknowledgedData, serialize_event
from services.domain.directory import load_directory
from services.eventlog import provision, read_messages
from services.eventlog.connection import inbox_prefix
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.integration.test_nats_permissions import ConfiguredNatsServer
from tests.support import EXAMPLES, HAMLINE_KEY, SmtpServer, eventually, report

# A deadline long enough for every forgery to be stored before it fires, short enough to wait.
RULES = """
version: 1
routes:
  - name: any-encounter
    match: {}
    notify: [law, safety, principal]
    require_ack: [law, safety]
    ack_within: 3s
    severity: high
escalation:
  tiers:
    - notify: backups
      ack_within: 1m
"""
# The users that may publish events, each with a subject it may publish on.
FORGERS = {
    "intake": "encounter.updated",
    "router": "escalation.decided",
    "notifier": "notification.sent",
}
CONTACTS = {"law": "law-dept", "safety": "safety-office"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ConfiguredNatsServer]:
    server = ConfiguredNatsServer(store=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    shutil.copy(EXAMPLES / "district.yaml", d / "district.yaml")
    (d / "rules.yaml").write_text(RULES)
    return d


@pytest.fixture
async def client(
    secured: ConfiguredNatsServer, config_dir: Path, smtp: SmtpServer
) -> AsyncIterator[httpx.AsyncClient]:
    """Intake in-process, router and notifier on the server, each as its own user."""
    admin = await nats.connect(secured.url_for("admin"))
    await provision(admin.jetstream())
    await admin.close()
    base = Settings(
        config_dir=config_dir,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        secret_key=secrets.token_urlsafe(32),  # type: ignore[arg-type]
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
    )

    def as_user(user: str) -> Settings:
        return base.model_copy(update={"nats_url": secured.url_for(user)})

    directory = load_directory(config_dir)
    router = router_broker(as_user("router"), rules=load_rules(config_dir), directory=directory)
    notifier = notifier_broker(as_user("notifier"), directory=directory)
    app = create_app(as_user("intake"), directory=directory)
    await router.start()
    await notifier.start()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as c,
        ):
            yield c
    finally:
        await notifier.stop()
        await router.stop()


def forged_ack(incident_id: str, role: str, user: str) -> bytes:
    return serialize_event(
        originating(
            IncidentAcknowledged,
            IncidentAcknowledgedData(role=role, contact_id=CONTACTS[role], via="link"),
            id=f"forged-{user}-{role}-{incident_id}",
            source="intake",
            incident_id=incident_id,
            school_id="hamline",
            now=datetime.now(UTC),
        )
    )


async def test_no_service_user_can_acknowledge_through_another_subject(
    secured: ConfiguredNatsServer, client: httpx.AsyncClient
) -> None:
    auth = {"Authorization": f"Bearer {HAMLINE_KEY}"}
    resp = await client.post("/api/v1/encounters", json=report(), headers=auth)
    assert resp.status_code == 202, resp.text
    incident_id = resp.json()["incident_id"]

    async def incident() -> dict[str, Any]:
        got = await client.get(f"/api/v1/incidents/{incident_id}", headers=auth)
        assert got.status_code == 200, got.text
        return dict(got.json())

    await eventually(lambda: _decided(incident()), timeout=10)

    for user, event_type in FORGERS.items():
        nc = await nats.connect(
            secured.url_for(user), allow_reconnect=False, inbox_prefix=inbox_prefix(user)
        )
        try:
            js = nc.jetstream()
            for role in CONTACTS:
                subject = f"dooralert.hamline.{incident_id}.{event_type}"
                # Stored: the server allows this user this subject. Only the payload lies.
                ack = await js.publish(subject, forged_ack(incident_id, role, user), timeout=2)
                assert ack.stream == "DOORALERT"
        finally:
            await nc.close()

    # The missed deadline escalates: the router's fold saw no acknowledgement.
    state = await eventually(lambda: _escalated(incident()), timeout=15, every=0.2)
    assert state["acknowledgements"] == []
    assert [r["acknowledged_at"] for r in state["required_roles"]] == [None, None]
    assert state["escalations"][0]["missing_roles"] == ["law", "safety"]

    # The one forgery a consumer reads (router-followups: encounter.updated) was set aside.
    admin = await nats.connect(secured.url_for("admin"))
    try:
        stored = await read_messages(admin.jetstream(), f"dooralert.*.{incident_id}.>")
    finally:
        await admin.close()
    dead = [m for m in stored if m.subject.endswith(".message.dead_lettered")]
    assert len(dead) == 2
    assert all(
        b"subject says encounter.updated but the payload is incident" in m.data for m in dead
    )


async def _decided(state: Any) -> bool:
    return bool((await state)["require_ack"])


async def _escalated(state: Any) -> dict[str, Any] | None:
    got = await state
    return got if got["escalations"] else None
