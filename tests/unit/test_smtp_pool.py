"""The SMTP pool's lean transactions (smtp.py) on a real aiosmtpd: the same bytes aiosmtplib's
send_message sends, two writes per email where the server offers PIPELINING (four without),
refusals classified and the session kept, and a message never sent twice when the session
drops after its body was written."""

from __future__ import annotations

import functools
import ssl
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from services.notifier import smtp as smtp_module
from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError
from services.notifier.smtp import SmtpPool, data_bytes
from services.runtime.settings import Settings
from tests.support import TEST_SECRET, ScriptedHandler, SmtpServer, free_port


class PipeliningHandler(ScriptedHandler):
    """Offers PIPELINING (as Postfix, Exim and the hosted MTAs do); aiosmtpd reads the
    pipelined commands line by line either way. `refuse` maps a command to its reply."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: dict[str, str] = {}
        self.datas = 0
        self.drop_after_data = False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if "MAIL" in self.refuse:
            return self.refuse["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if "RCPT" in self.refuse:
            return self.refuse["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.datas += 1
        if self.drop_after_data:
            server.transport.close()
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def pipelining() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = PipeliningHandler()
    server.start()
    yield server
    server.stop()


def pool_for(server: SmtpServer, size: int = 1) -> SmtpPool:
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=server.port,
        secret_key=TEST_SECRET,
        smtp_timeout=5.0,
    )
    return SmtpPool(settings=settings, size=size)


def email(
    to: str = "law@district.example", body: str = "Agents at the front door."
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "dooralert@district.example"
    msg["To"] = to
    msg["Subject"] = "[dooralert] test"
    msg.set_content(body)
    return msg


class Writes:
    """Counts the writes to the pool's sessions (one per `_Wire.exchange`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        exchange = smtp_module._Wire.exchange

        async def counted(wire: Any, data: bytes, replies: int, timeout: float) -> Any:
            self.count += 1
            return await exchange(wire, data, replies, timeout)

        monkeypatch.setattr(smtp_module._Wire, "exchange", counted)


@pytest.mark.parametrize("server", ["smtp", "pipelining"])
async def test_the_pool_sends_what_send_message_sends(
    server: str, request: pytest.FixtureRequest
) -> None:
    sink: SmtpServer = request.getfixturevalue(server)
    msg = email(body="naïve café\n.leading dot\nFrom the door\r\nlone\rcarriage")
    pool = pool_for(sink)
    try:
        await pool.send(msg)
        await pool.send(msg)
    finally:
        await pool.close()
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=sink.port)
    first, second, reference = sink.received
    assert first.rcpt == second.rcpt == reference.rcpt == ["law@district.example"]
    assert first.raw == second.raw == reference.raw
    assert pool.connects == 1


async def test_two_writes_per_email_with_pipelining_four_without(
    smtp: SmtpServer, pipelining: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = Writes(monkeypatch)
    for server, per_email in ((pipelining, 2), (smtp, 4)):
        pool = pool_for(server)
        try:
            await pool.send(email())  # opens the session
            before = writes.count
            for _ in range(3):
                assert "OK" in await pool.send(email())
            assert writes.count - before == 3 * per_email
        finally:
            await pool.close()
    assert len(pipelining.received) == len(smtp.received) == 4


@pytest.mark.parametrize("server", ["smtp", "pipelining"])
async def test_refusals_are_classified_and_the_session_reused(
    server: str, request: pytest.FixtureRequest
) -> None:
    sink: SmtpServer = request.getfixturevalue(server)
    handler = sink.handler
    pool = pool_for(sink)
    try:
        if isinstance(handler, PipeliningHandler):
            handler.refuse = {"RCPT": "550 5.1.1 no such user"}
            with pytest.raises(PermanentDeliveryError, match="550"):
                await pool.send(email())
            handler.refuse = {"MAIL": "451 4.3.0 try later"}
            with pytest.raises(TransientDeliveryError, match="451"):
                await pool.send(email())
            handler.refuse = {}
        handler.replies = ["552 5.3.4 too big", "451 4.3.0 busy"]
        with pytest.raises(PermanentDeliveryError, match="552"):
            await pool.send(email())
        with pytest.raises(TransientDeliveryError, match="451"):
            await pool.send(email())
        assert "OK" in await pool.send(email())
    finally:
        await pool.close()
    assert len(sink.received) == 1
    assert pool.connects == 1  # every refusal left the session usable


async def test_421_closes_the_session(pipelining: SmtpServer) -> None:
    pool = pool_for(pipelining)
    try:
        pipelining.handler.replies = ["421 4.7.0 closing"]
        with pytest.raises(TransientDeliveryError, match="421"):
            await pool.send(email())
        assert "OK" in await pool.send(email())
    finally:
        await pool.close()
    assert pool.connects == 2


@pytest.mark.parametrize("server", ["smtp", "pipelining"])
async def test_a_session_dropped_while_idle_is_retried_once_on_a_new_one(
    server: str, request: pytest.FixtureRequest
) -> None:
    sink: SmtpServer = request.getfixturevalue(server)
    pool = pool_for(sink)
    try:
        await pool.send(email())
        sink.stop()  # closes the pooled session
        sink.start()
        assert "OK" in await pool.send(email())
    finally:
        await pool.close()
    assert pool.connects == 2
    assert len(sink.received) == 2


async def test_a_drop_after_the_body_is_not_sent_again(pipelining: SmtpServer) -> None:
    handler = pipelining.handler
    assert isinstance(handler, PipeliningHandler)
    pool = pool_for(pipelining)
    try:
        await pool.send(email())
        handler.drop_after_data = True
        with pytest.raises(TransientDeliveryError):
            await pool.send(email())
    finally:
        await pool.close()
    # The server had the message: sending it again on a new session would be a duplicate.
    assert handler.datas == 2
    assert pool.connects == 1


async def test_the_probe_asks_the_taken_session(pipelining: SmtpServer) -> None:
    pool = pool_for(pipelining)
    try:
        assert await pool.probe()
        assert await pool.probe()
        assert pool.connects == 1
        pipelining.stop()
        assert not await pool.probe()
        assert not pool.ok
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"a\r\nb\r\n",
        b"a\nb",
        b".start\r\nmid\r\n.dot\r\n..two\r\n",
        b"lone\rcr\r\nand\nlf\r\n",
        b"",
    ],
)
def test_data_bytes_match_aiosmtplib(raw: bytes) -> None:
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) + b".\r\n"
    assert data_bytes(raw) == expected


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


async def test_sessions_behind_starttls_and_auth_are_taken_over_too(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = PipeliningHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=lambda *args: AuthResult(success=True),
        auth_require_tls=True,
    )
    controller.start()
    # The test's certificate is its own: the client trusts it (the pool's settings have no CA).
    monkeypatch.setattr(
        aiosmtplib, "SMTP", functools.partial(aiosmtplib.SMTP, validate_certs=False)
    )
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_starttls=True,
        smtp_username="dooralert",
        smtp_password="secret",
        secret_key=TEST_SECRET,
    )
    pool = SmtpPool(settings=settings, size=1)
    try:
        for _ in range(3):
            assert "OK" in await pool.send(email())
        assert await pool.probe()
        assert [s.wire is not None for s in pool._idle] == [True]  # written by _Wire
    finally:
        await pool.close()
        controller.stop()
    assert len(handler.received) == 3
    assert pool.connects == 1


class _Transport:
    """A transport that only records writes (the reply arrives by data_received)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def set_protocol(self, protocol: object) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


@pytest.mark.parametrize("cut", [5, 18, 19, 25, 40])
async def test_a_multi_line_reply_split_across_reads_keeps_every_line(cut: int) -> None:
    import asyncio

    reply = b"550-first line\r\n550-second line\r\n550 third line\r\n"
    wire = smtp_module._Wire(_Transport())  # type: ignore[arg-type]
    asked = asyncio.ensure_future(wire.exchange(b"MAIL FROM:<a@b>\r\n", 1, timeout=5))
    await asyncio.sleep(0)
    wire.data_received(reply[:cut])
    wire.data_received(reply[cut:])
    (answer,) = await asked
    assert answer.code == 550
    assert answer.message == "first line\nsecond line\nthird line"
