"""Test helpers: a real nats-server per test, a programmable real SMTP server, sample reports."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from services.cli.dev import nats_server_binary
from services.domain.tokens import Keyring

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "deploy" / "examples"
# The secret key test settings sign with: 32+ bytes, and not a published example (the
# services refuse those). TEST_KEYS is the keyring it makes.
TEST_SECRET = "dooralert-tests-secret-key-0123456789-abcdefgh"
TEST_KEYS = Keyring.of([TEST_SECRET])
HAMLINE_KEY = "demo-hamline-intake-key"
LINCOLN_KEY = "demo-lincoln-intake-key"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open at once while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NatsServer:
    """A real nats-server with JetStream, its store in a temp dir, stopped by its PID."""

    store: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store),
            ],
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
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Received:
    rcpt: list[str]
    message: Message
    raw: bytes


class ScriptedHandler:
    """aiosmtpd handler: accepts mail, or answers with scripted replies first (e.g. 451, 550)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: list[str] = []  # consumed one per DATA; empty = accept
        self.reply_for: Callable[[list[str]], str | None] = lambda rcpts: None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        scripted = self.reply_for(list(envelope.rcpt_tos))
        if scripted is None and self.replies:
            scripted = self.replies.pop(0)
        if scripted is not None:
            return scripted
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        self.received.append(
            Received(list(envelope.rcpt_tos), message_from_bytes(raw, policy=policy.default), raw)
        )
        return "250 OK queued"


class SmtpServer:
    def __init__(self) -> None:
        self.handler = ScriptedHandler()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        # A stopped Controller cannot start again: a restart is a new server on the same port.
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "school_id": "hamline",
        "location": "Front entrance",
        "agency_stated": "ice",
        "agent_count": 2,
        "credentials_shown": True,
        "document": "administrative_warrant",
        "signed_by_judge": "no",
        "purpose": "unspecified",
        "entry": "kept_outside",
    }
    base.update(overrides)
    return base


async def eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, every: float = 0.05
) -> Any:
    """Poll an (async or plain) check until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(every)


def utcnow() -> datetime:
    return datetime.now(UTC)


def stored_report(r: Any) -> Any:
    """An `EncounterReport` as the log stores it (a `SealedReport`), its clear notes left out:
    tests hand notes to the readers (emails, pages) in clear, as those open them."""
    from schemas.events import SealedReport

    # Not validated: some tests hand in a report built unchecked on purpose.
    return SealedReport.model_construct(**{k: v for k, v in r if k != "notes"})
