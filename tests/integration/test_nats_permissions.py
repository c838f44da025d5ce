"""deploy/nats/server.conf on a real nats-server: each service user may publish only its own
event types; the auditor reads the log and cannot write to it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig

from services.domain.directory import load_directory
from services.eventlog import provision, read_messages
from services.eventlog.connection import inbox_prefix
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.support import (
    EXAMPLES,
    HAMLINE_KEY,
    REPO,
    TEST_SECRET,
    NatsServer,
    SmtpServer,
    eventually,
    report,
)

CONFIG = REPO / "deploy" / "nats" / "server.conf"
USERS = ("admin", "intake", "router", "notifier", "ledger", "auditor")


@dataclass
class ConfiguredNatsServer(NatsServer):
    """A NatsServer started with `-c config`; user passwords passed in the environment."""

    config: Path = CONFIG
    passwords: dict[str, str] = field(
        default_factory=lambda: {u: f"pw-{u}-{os.getpid()}" for u in USERS}
    )

    def start(self) -> None:
        from services.cli.dev import nats_server_binary

        env = {
            **os.environ,
            **{f"DOORALERT_NATS_{u.upper()}_PASSWORD": p for u, p in self.passwords.items()},
        }
        self.proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-c",
                str(self.config),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start with " + str(self.config))

    def url_for(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ConfiguredNatsServer]:
    server = ConfiguredNatsServer(store=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@dataclass
class Conn:
    nc: Client
    errors: list[str]

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=0.5)

    async def refused(self, subject: str, payload: bytes = b"{}") -> bool:
        """A JetStream publish the server refuses: no ack, and a permissions violation."""
        self.errors.clear()
        try:
            await self.js.publish(subject, payload, timeout=0.3)
        except Exception:  # noqa: BLE001 - timeout: the server dropped it
            await eventually(lambda: self.errors, timeout=3)
            return any("permissions violation" in e.lower() for e in self.errors)
        return False


Connect = Callable[[str], Awaitable[Conn]]


@pytest.fixture
async def connect(secured: ConfiguredNatsServer) -> AsyncIterator[Connect]:
    conns: list[Conn] = []

    async def open_as(user: str) -> Conn:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(
            secured.url_for(user),
            error_cb=on_error,
            allow_reconnect=False,
            name=f"test-{user}",
            inbox_prefix=inbox_prefix(user),  # as the services connect (connection_options)
        )
        conn = Conn(nc, errors)
        conns.append(conn)
        return conn

    admin = await open_as("admin")
    await provision(admin.js)
    yield open_as
    for c in conns:
        await c.nc.close()


def subj(event_type: str, school: str = "hamline", incident: str = "inc-1") -> str:
    return f"dooralert.{school}.{incident}.{event_type}"


async def test_wrong_password_is_refused(secured: ConfiguredNatsServer) -> None:
    with pytest.raises(NatsError):
        await nats.connect(
            f"nats://intake:wrong@127.0.0.1:{secured.port}",
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )


async def test_each_service_publishes_only_its_own_event_types(connect: Connect) -> None:
    allowed = {
        "intake": [
            "encounter.reported",
            "encounter.updated",
            "incident.acknowledged",
            "incident.resolved",
        ],
        "router": [
            "escalation.decided",
            "escalation.raised",
            "notification.requested",
            "pattern.detected",
            "message.dead_lettered",
        ],
        "notifier": [
            "notification.sent",
            "notification.failed",
            "notification.requested",
            "message.dead_lettered",
        ],
    }
    everything = {t for types in allowed.values() for t in types}
    for user, types in allowed.items():
        conn = await connect(user)
        for i, event_type in enumerate(types):
            ack = await conn.js.publish(
                subj(event_type, incident=f"{user}-{i}"), b"{}", timeout=2.0
            )
            assert ack.stream == "DOORALERT"
        for event_type in sorted(everything - set(types))[:3]:
            assert await conn.refused(subj(event_type)), (user, event_type)
        # Nobody but the admin may change the log's configuration.
        with pytest.raises(NatsError):
            await conn.js.delete_stream("DOORALERT")
    router = await connect("router")
    ack = await router.js.publish("dooralert_timers.schedule.inc-1", b"{}", timeout=2.0)
    assert ack.stream == "DOORALERT_TIMERS"
    intake = await connect("intake")
    assert await intake.refused("dooralert_timers.schedule.inc-1")


async def test_auditor_reads_the_log_but_cannot_write_or_reconfigure(connect: Connect) -> None:
    intake = await connect("intake")
    await intake.js.publish(subj("encounter.reported"), b'{"x":1}', timeout=2.0)
    auditor = await connect("auditor")
    try:
        stored = await read_messages(auditor.js)
    except Exception as exc:  # show the server's violations, not a bare timeout
        raise AssertionError(auditor.errors) from exc
    assert [m.subject for m in stored] == [subj("encounter.reported")]
    assert (await auditor.js.stream_info("DOORALERT")).state.messages == 1
    for subject in (
        subj("encounter.reported"),
        subj("incident.resolved"),
        "dooralert_checkpoints.demo",
        "dooralert_timers.x",
    ):
        assert await auditor.refused(subject), subject
    for attempt in (
        auditor.js.add_stream(StreamConfig(name="COPY", subjects=["copy.>"])),
        auditor.js.delete_stream("DOORALERT"),
        # A named or durable consumer could replace a service's: only throwaway ones.
        auditor.js.add_consumer("DOORALERT", ConsumerConfig(durable_name="router")),
        auditor.js.add_consumer(
            "DOORALERT",
            ConsumerConfig(name="router", durable_name="router", filter_subject="dooralert.>"),
        ),
        auditor.js.delete_consumer("DOORALERT", "router"),
    ):
        with pytest.raises(NatsError):
            await attempt
    admin = await connect("admin")
    assert (await admin.js.stream_info("DOORALERT")).state.messages == 1


async def test_the_services_run_under_their_own_users(
    secured: ConfiguredNatsServer,
    connect: Connect,
    smtp: SmtpServer,
    tmp_path: Path,
) -> None:
    await connect("admin")  # provisions
    base = Settings(
        config_dir=EXAMPLES,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        secret_key=TEST_SECRET,
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        max_attempts=4,
    )
    directory = load_directory(EXAMPLES)
    as_user = {
        u: base.model_copy(update={"nats_url": secured.url_for(u)})
        for u in ("intake", "router", "notifier")
    }
    router = router_broker(as_user["router"], rules=load_rules(EXAMPLES), directory=directory)
    notifier = notifier_broker(as_user["notifier"], directory=directory)
    app = create_app(as_user["intake"], directory=directory)
    await router.start()
    await notifier.start()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://intake"
            ) as client,
        ):
            resp = await client.post(
                "/api/v1/encounters",
                json=report(),
                headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
            )
            assert resp.status_code == 202, resp.text
            incident_id = resp.json()["incident_id"]

            async def delivered() -> bool:
                got = await client.get(
                    f"/api/v1/incidents/{incident_id}",
                    headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
                )
                notes = got.json()["notifications"]
                return bool(notes) and all(n["status"] == "sent" for n in notes)

            await eventually(delivered, timeout=20, every=0.2)
    finally:
        await notifier.stop()
        await router.stop()
    assert len(smtp.received) >= 4
