"""Reused SMTP sessions: a small pool of connections per server, each sending lean transactions.

A burst of alerts to one server pays the TCP + EHLO (+ STARTTLS + AUTH) cost once per pooled
session instead of once per message. A pool, not one session behind a lock: a recipient whose
server stalls holds only its own session, so the other alerts keep flowing.

aiosmtplib opens each session (connect, TLS, EHLO, AUTH); when the server takes 8-bit bodies,
the session's transactions are then written here (`_Wire`), as few writes as the server allows:
with PIPELINING (RFC 2920: every common MTA offers it) MAIL, RCPT and DATA go in one write and
the body in a second, two round trips per email instead of four; without it one command per
write, as RFC 5321 requires. Each reply is parsed as it arrives (one future per exchange, no
task or lock per command), and the body is written once, dot-stuffed only when it has a line
starting with a dot. A server without 8BITMIME keeps aiosmtplib's `send_message` throughout,
and gets the email with its text parts quoted-printable as before (wire.for_7bit_server): the
lean path sends them as their own lines, up to 998 octets each (fewer lines for the server to
read).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import lru_cache
from typing import cast

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, quote_address

from services.notifier.channels import TransientDeliveryError, classify_smtp, scrub
from services.notifier.wire import for_7bit_server, wire_bytes
from services.runtime.metrics import SMTP_UP
from services.runtime.settings import Settings

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_MAX_REPLY = 64 * 1024  # a reply longer than this is not an SMTP server talking


class _Disconnected(aiosmtplib.SMTPServerDisconnected):
    """The server closed the session."""


class _IdleDrop(_Disconnected):
    """The server had closed the session before it answered this transaction's first command:
    nothing of the message was accepted, so it may be sent again on a new session."""


class _Wire(asyncio.Protocol):
    """One pooled session's connection after aiosmtplib opened it: writes whole exchanges and
    parses the replies as they arrive."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # a multi-line reply's lines so far (across reads)
        self._replies: deque[aiosmtplib.SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        self._lost: Exception | None = None
        transport.set_protocol(self)

    @property
    def is_connected(self) -> bool:
        return self._lost is None and not self.transport.is_closing()

    async def exchange(
        self, data: bytes, replies: int, timeout: float
    ) -> list[aiosmtplib.SMTPResponse]:
        """Write `data` at once and return the next `replies` replies."""
        if not self.is_connected:
            raise self._lost or _Disconnected("Connection lost")
        self._replies.clear()  # nothing unasked-for is taken as an answer
        self._lines = []
        self.transport.write(data)
        if len(self._replies) < replies:
            waiter = self._loop.create_future()
            self._waiter, self._want = waiter, replies
            timer = self._loop.call_later(timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return [self._replies.popleft() for _ in range(replies)]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        lines = self._lines
        while (end := buffer.find(b"\n", start)) != -1:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            lines.append(line[4:].strip())
            if line[3:4] == b"-":
                continue
            try:
                code = int(line[:3])
            except ValueError:
                self._fail(aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response"))
                return
            message = b"\n".join(lines).decode("utf-8", "surrogateescape")
            self._replies.append(aiosmtplib.SMTPResponse(code, message))
            lines = self._lines = []
        if start:
            del buffer[:start]
        if len(buffer) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done() and len(self._replies) >= self._want:
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(_Disconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_Disconnected("Connection lost"))

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.transport.close()

    def close(self) -> None:
        self.transport.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(
            aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")
        )


@dataclass
class _Session:
    smtp: aiosmtplib.SMTP
    last_used: float
    wire: _Wire | None = None  # set when the transactions are written here
    extensions: dict[str, str] = field(default_factory=dict)

    @property
    def is_connected(self) -> bool:
        return self.wire.is_connected if self.wire is not None else self.smtp.is_connected

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
        else:
            self.smtp.close()


class SmtpPool:
    """Up to `size` open sessions to the configured server, each used by one send at a time."""

    def __init__(self, *, settings: Settings, size: int | None = None) -> None:
        self.settings = settings
        self.size = max(1, size if size is not None else settings.smtp_pool_size)
        self._idle: list[_Session] = []
        self._slots = asyncio.Semaphore(self.size)
        self.connects = 0  # sessions opened, for tests and the benchmark
        # Whether the server answered last time (a send or a probe): the notifier's readiness.
        self.ok = True

    async def _open(self) -> _Session:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout,
            use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=password,
        )
        await smtp.connect()
        session = _Session(smtp, time.monotonic())
        try:
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
            transport = smtp.transport
            if smtp.supports_extension("8bitmime") and transport is not None:
                session.extensions = dict(smtp.esmtp_extensions)
                session.wire = _Wire(cast("asyncio.Transport", transport))
        except BaseException:
            smtp.close()
            raise
        self.connects += 1
        return session

    def _take_idle(self) -> _Session | None:
        while self._idle:
            session = self._idle.pop()
            fresh = time.monotonic() - session.last_used < self.settings.smtp_idle_seconds
            if fresh and session.is_connected:
                return session
            _close_quietly(session)
        return None

    async def send(self, message: EmailMessage) -> str:
        """Send one message on a pooled session; return the reply or raise DeliveryError."""
        async with self._slots:
            session = self._take_idle()
            reused = session is not None
            try:
                if session is None:
                    session = await self._open()
                try:
                    reply = await self._send_on(session, message)
                except (_IdleDrop, aiosmtplib.SMTPServerDisconnected) as exc:
                    # The server dropped a pooled session while it sat idle, before it answered
                    # MAIL FROM: one retry on a new session is safe. (aiosmtplib's sessions,
                    # kept only for servers without 8BITMIME, cannot tell when it dropped.)
                    if not reused or not (isinstance(exc, _IdleDrop) or session.wire is None):
                        raise
                    _close_quietly(session)
                    session = await self._open()
                    reply = await self._send_on(session, message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._release(session)
                first = exc.recipients[0]
                raise classify_smtp(first.code, first.message) from None
            except aiosmtplib.SMTPResponseException as exc:
                # The envelope was reset after a refusal: the session is reusable, unless the
                # server said it is closing it (421).
                if exc.code == 421:
                    _close_quietly(session)
                else:
                    self._release(session)
                raise classify_smtp(exc.code, exc.message) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                _close_quietly(session)
                self._answered(False)
                raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from None
            except BaseException:
                _close_quietly(session)
                raise
            self._release(session)
            self._answered(True)
            return reply

    def _answered(self, ok: bool) -> None:
        self.ok = ok
        SMTP_UP.set(float(ok))

    async def probe(self) -> bool:
        """Check the server answers (NOOP on a pooled session, else a new one kept in the
        pool); skipped while every session is busy sending, since the sends tell."""
        if self._slots.locked():
            return self.ok
        async with self._slots:
            session = self._take_idle()
            try:
                if session is None:
                    session = await self._open()
                if session.wire is not None:
                    (noop,) = await session.wire.exchange(b"NOOP\r\n", 1, self._timeout)
                    if noop.code != 250:
                        raise aiosmtplib.SMTPResponseException(noop.code, noop.message)
                else:
                    await session.smtp.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                _close_quietly(session)
                self._answered(False)
                return False
            self._release(session)
            self._answered(True)
            return True

    async def watch(self, every: float) -> None:
        """Probe every `every` seconds until cancelled."""
        while True:
            await self.probe()
            await asyncio.sleep(every)

    @property
    def _timeout(self) -> float:
        return float(self.settings.smtp_timeout)

    async def _send_on(self, session: _Session, message: EmailMessage) -> str:
        if session.wire is None:
            if not session.smtp.supports_extension("8bitmime"):
                # Long lines as they are only where the server takes 8-bit bodies: else the
                # email as it was made before, quoted-printable (wire.for_7bit_server).
                message = cast("EmailMessage", for_7bit_server(message))
            errors, reply = await session.smtp.send_message(message)
            if errors:
                code, text = next(iter(errors.values()))
                raise aiosmtplib.SMTPResponseException(code, text)
            return scrub(reply)
        sender, recipients = _envelope(message)
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        options = ["BODY=8BITMIME"]
        if utf8:
            if "smtputf8" not in session.extensions:
                raise aiosmtplib.SMTPNotSupported(
                    "An address containing non-ASCII characters was provided, but "
                    "SMTPUTF8 is not supported by this server"
                )
            options.append("SMTPUTF8")
        # The bytes written directly (wire.py) where they are what send_message would send:
        # sender and recipients are ASCII; else the generator's, as send_message makes them.
        raw = wire_bytes(message) if not utf8 else None
        if raw is None:
            raw = flatten_message(message, utf8=utf8, cte_type="8bit")
        body = data_bytes(raw)
        if "size" in session.extensions:
            options.insert(0, f"SIZE={len(body) - 3}")  # as sent, less the final ".\r\n"
        return await _transaction(
            session.wire,
            sender,
            recipients,
            body,
            options=options,
            pipelining="pipelining" in session.extensions,
            timeout=self._timeout,
            encoding="utf-8" if utf8 else "ascii",
        )

    def _release(self, session: _Session | None) -> None:
        if session is None:
            return
        if session.is_connected:
            session.last_used = time.monotonic()
            self._idle.append(session)

    async def close(self) -> None:
        while self._idle:
            session = self._idle.pop()
            try:
                if session.wire is not None:
                    await session.wire.exchange(b"QUIT\r\n", 1, 2.0)
                    session.wire.close()
                else:
                    await asyncio.wait_for(session.smtp.quit(), timeout=2)
            except Exception:  # noqa: BLE001 - closing anyway
                session.close()


async def _transaction(
    wire: _Wire,
    sender: str,
    recipients: list[str],
    body: bytes,
    *,
    options: list[str],
    pipelining: bool,
    timeout: float,
    encoding: str,
) -> str:
    """MAIL, RCPT, DATA and the body on `wire`: the final reply (addresses removed), or the
    refusal raised as aiosmtplib raises it (the envelope reset first, as it does)."""
    mail = " ".join(["MAIL FROM:" + _quoted(sender), *options]).encode(encoding) + b"\r\n"
    rcpts = [b"RCPT TO:" + _quoted(r).encode(encoding) + b"\r\n" for r in recipients]
    if pipelining:
        replies = await _first(wire, b"".join([mail, *rcpts, b"DATA\r\n"]), len(rcpts) + 2, timeout)
        mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
    else:
        (mail_reply,) = await _first(wire, mail, 1, timeout)
        if mail_reply.code != 250:
            await _reset(wire, timeout)
            raise aiosmtplib.SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
        rcpt_replies = []
        for rcpt in rcpts:
            rcpt_replies += await wire.exchange(rcpt, 1, timeout)
        data_reply = None
    if mail_reply.code == 421:
        raise aiosmtplib.SMTPResponseException(mail_reply.code, mail_reply.message)
    refused = [
        aiosmtplib.SMTPRecipientRefused(r.code, r.message, recipients[i])
        for i, r in enumerate(rcpt_replies)
        if r.code not in (250, 251)
    ]
    if pipelining:
        if data_reply is not None and data_reply.code == 354:
            # The server took DATA: a message it must accept or refuse whole. When nobody was
            # accepted, end it empty (RFC 2920 §3.1) and report the refusal.
            ok = mail_reply.code == 250 and len(refused) < len(recipients)
            (final,) = await wire.exchange(body if ok else b".\r\n", 1, timeout)
            if ok:
                return _done(final, refused)
        if mail_reply.code != 250:
            await _reset(wire, timeout)
            raise aiosmtplib.SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
    if len(refused) == len(recipients):
        await _reset(wire, timeout)
        raise aiosmtplib.SMTPRecipientsRefused(refused)
    if not pipelining:
        (data_reply,) = await wire.exchange(b"DATA\r\n", 1, timeout)
        if data_reply.code == 354:
            (final,) = await wire.exchange(body, 1, timeout)
            return _done(final, refused)
    assert data_reply is not None
    await _reset(wire, timeout)
    raise aiosmtplib.SMTPDataError(data_reply.code, data_reply.message)


async def _first(
    wire: _Wire, commands: bytes, replies: int, timeout: float
) -> list[aiosmtplib.SMTPResponse]:
    """The transaction's first exchange: a session found closed here accepted nothing."""
    try:
        return await wire.exchange(commands, replies, timeout)
    except _Disconnected as exc:
        raise _IdleDrop(str(exc)) from None


def _done(final: aiosmtplib.SMTPResponse, refused: list[aiosmtplib.SMTPRecipientRefused]) -> str:
    if final.code != 250:
        raise aiosmtplib.SMTPDataError(final.code, final.message)
    if refused:  # accepted for some recipients only: reported as send_message's errors were
        raise aiosmtplib.SMTPResponseException(refused[0].code, refused[0].message)
    return scrub(final.message)


async def _reset(wire: _Wire, timeout: float) -> None:
    """RSET after a refusal, so the session can carry the next message; a session that does
    not answer it is closed (and so not pooled again)."""
    try:
        (reply,) = await wire.exchange(b"RSET\r\n", 1, timeout)
    except (aiosmtplib.SMTPException, OSError):
        wire.close()
        return
    if reply.code != 250:
        wire.close()


# aiosmtplib's quote_address parses the address with the email package on every call (about
# 4% of the notifier's CPU in a burst); the same few hundred directory addresses come back, so
# each is parsed once. A refused address raises every time (exceptions are not cached).
_quoted = lru_cache(maxsize=4096)(quote_address)


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TO as send_message takes them from the headers."""
    sender = extract_sender(message)
    if sender is None:
        raise ValueError("No From header provided in message")
    recipients = extract_recipients(message)
    if not recipients:
        raise ValueError("No recipient headers provided in message")
    return sender, recipients


def data_bytes(raw: bytes) -> bytes:
    """The message as DATA carries it: CRLF line endings, a dot doubled at the start of a
    line, the closing dot; the same bytes as aiosmtplib writes, each regex run only when its
    pattern occurs."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:
        raw = _LINE_ENDINGS.sub(b"\r\n", raw)
    if raw.startswith(b".") or b"\n." in raw:
        raw = _LEADING_DOT.sub(b"..", raw)
    return raw + (b".\r\n" if raw.endswith(b"\r\n") else b"\r\n.\r\n")


def _close_quietly(session: _Session | None) -> None:
    if session is not None:
        session.close()
