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
import contextlib
import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import lru_cache
from typing import cast

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, quote_address

from services.notifier.channels import TransientDeliveryError, classify_smtp, scrub
from services.notifier.wire import for_7bit_server, wire_bytes
from services.runtime.logging import get_logger
from services.runtime.metrics import SMTP_UP
from services.runtime.settings import Settings

log = get_logger("dooralert.notifier")

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
    # The pool's count of sessions alive, told once when this one is closed (SmtpPool._gone).
    gone: Callable[[], None] | None = None

    @property
    def is_connected(self) -> bool:
        return self.wire.is_connected if self.wire is not None else self.smtp.is_connected

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
        else:
            self.smtp.close()
        gone, self.gone = self.gone, None
        if gone is not None:
            gone()


class Begun:
    """An email's transaction started while the email is still being made: MAIL, RCPT and
    DATA go out on an idle pooled session while the notifier reads what the email is about,
    so that once it is made only the body is left to send (for a server without PIPELINING,
    three of its four round trips no longer wait for the reads and the rendering).

    Nothing of it is accepted before the body: a transaction not used (the email is not
    sent, or its envelope turns out different, or any answer was not the expected one) is
    ended by closing its session, which makes the server discard it (RFC 5321 §4.1.1.4), and
    the email, if sent, goes through `SmtpPool.send` as it would have without it. MAIL
    carries no SIZE (the body is not made yet; RFC 1870 makes it optional): a server that
    finds the body too big refuses it after the body, as it refuses any message."""

    __slots__ = ("_slots", "_taken", "_task", "recipients", "sender")

    def __init__(
        self,
        sender: str,
        recipients: tuple[str, ...],
        task: asyncio.Future[_Session | None],
        slots: asyncio.Semaphore,
    ) -> None:
        self.sender, self.recipients = sender, recipients
        self._task, self._slots = task, slots
        self._taken = False

    @property
    def utf8(self) -> bool:
        """Whether an address is not ASCII (MAIL asked for SMTPUTF8)."""
        return not (self.sender.isascii() and all(r.isascii() for r in self.recipients))

    async def take(self, message: EmailMessage) -> _Session | None:
        """The session waiting for `message`'s body (holding a slot of the pool), or None
        when the transaction cannot carry it (it is ended, nothing held)."""
        self._taken = True
        try:
            session = await self._task
        except Exception:  # noqa: BLE001 - the session was closed: send it the usual way
            return None
        except BaseException:
            # Cancelled while waiting: `_begin`, cancelled with the wait, ends it itself; but
            # done in that instant (before this wait resumed), its session is ended here.
            self._end()
            raise
        if session is None:
            return None
        try:
            same = _envelope(message) == (self.sender, list(self.recipients))
        except Exception:  # noqa: BLE001 - never raised holding the slot: `send` raises it
            same = False
        if same and session.is_connected:
            return session
        self._ended(self._task)
        return None

    def drop(self) -> None:
        """The email is not sent: end the transaction (now, or when it is started). Nothing
        once it was taken (`take` ends it, or `send` uses it)."""
        if self._taken:
            return
        self._taken = True
        self._end()

    def _end(self) -> None:
        """End the transaction: now if `_begin` is done, else once it is (cancelled)."""
        if self._task.done():
            self._ended(self._task)
        else:
            self._task.cancel()
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[_Session | None]) -> None:
        if task.cancelled() or task.exception() is not None:
            return  # `_begin` closed the session and gave the slot back
        session = task.result()
        if session is not None:
            session.close()
            self._slots.release()


class SmtpPool:
    """Up to `size` open sessions to the configured server, each used by one send at a time.

    A server may take fewer connections at once from one client than `size` (Postfix's
    smtpd_client_connection_count_limit, a relay's own cap). When it refuses a new session
    (connection refused or closed, a 4xx greeting or EHLO, a timeout) while this pool has
    others alive or being opened, that is neither a failed delivery nor the server down: the
    pool's `ceiling` comes down to the sessions it has alive, and the send waits, up to
    smtp_timeout, for one of them. The ceiling goes up by one after `ceiling_quiet_seconds`
    without a refusal, up to `size`. A refusal with no session alive is the server down, as
    it always was (the send fails, SMTP_UP 0)."""

    def __init__(
        self,
        *,
        settings: Settings,
        size: int | None = None,
        ceiling_quiet_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self.size = max(1, size if size is not None else settings.smtp_pool_size)
        self._idle: list[_Session] = []
        self._slots = asyncio.Semaphore(self.size)
        self.connects = 0  # sessions opened, for tests and the benchmark
        # Whether the server answered last time (a send or a probe): the notifier's readiness.
        self.ok = True
        # Sessions open: opened minus closed, whether idle or in use (`_Session.gone`).
        self.live = 0
        self._opening = 0  # sessions being opened
        # New sessions are opened only while live + opening < ceiling (<= size).
        self.ceiling = self.size
        self.ceiling_quiet_seconds = ceiling_quiet_seconds
        self._quiet_since = 0.0  # the last refusal, or the ceiling's last rise
        self._lowered_from: int | None = None  # a lowering not logged yet (opens under way)
        self._lowered_by = ""
        # Sends waiting for a session (the ceiling reached): a released one is handed to the
        # first; None wakes them to look again (a session closed, or an open failed).
        self._waiters: deque[asyncio.Future[_Session | None]] = deque()

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
        self.live += 1
        session.gone = self._gone
        # Opens under way when a refusal lowered the ceiling may still succeed: the server
        # took them, so the ceiling is never below the sessions alive.
        self.ceiling = max(self.ceiling, self.live)
        return session

    async def _open_counted(self) -> _Session:
        """`_open`, counted among the sessions being opened; waiters look again if it fails."""
        self._opening += 1
        try:
            session = await self._open()
        except BaseException:
            self._opening -= 1
            self._wake()
            self._log_lowered()
            raise
        self._opening -= 1
        self._log_lowered()
        return session

    async def _acquire(self, *, reuse: bool = True) -> tuple[_Session, bool]:
        """A session for one send, and whether it was used before: an idle one, else a new one
        while the pool is under its ceiling, else one another send releases, waited for up to
        smtp_timeout (then TransientDeliveryError). A new session the server refuses lowers
        the ceiling and the send waits, while the pool has other sessions alive or being
        opened; with none, the refusal is raised, as any failure to open."""
        refused: Exception | None = None
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            session = self._take_idle() if reuse else None
            reuse = True
            if session is not None:
                return session, True
            if refused is not None and self.live + self._opening == 0:
                self._server_down()
                raise refused  # every other session failed too: the server is down
            if self.live + self._opening < self._ceiling_now():
                try:
                    return await self._open_counted(), False
                except Exception as exc:
                    if self.live + self._opening == 0:
                        self._server_down()
                        raise
                    if not _refusal(exc):
                        raise
                    refused = exc
                    self._refused(exc)
                    continue  # a session released meanwhile is taken at once
            if deadline is None:
                deadline = loop.time() + self._timeout
            session = await self._wait(loop, deadline)
            if session is not None:
                return session, True

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Session | None:
        """A session released by another send, or None when woken to look again."""
        waiter: asyncio.Future[_Session | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _give_up, waiter)
        try:
            return await waiter
        except TimeoutError:
            raise TransientDeliveryError(
                f"no SMTP session free within {self._timeout:g} s "
                f"(the server takes {self.ceiling} at once)"
            ) from None
        except BaseException:
            # Cancelled: a session handed over in that instant goes to the next send.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Waiting sends look again: a session closed or an open failed."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _gone(self) -> None:
        """A session was closed (`_Session.close`, once per session)."""
        self.live -= 1
        self._wake()

    def _ceiling_now(self) -> int:
        """The ceiling, up by one for each `ceiling_quiet_seconds` without a refusal."""
        if self.ceiling < self.size:
            quiet = max(self.ceiling_quiet_seconds, 1e-6)
            periods = int((time.monotonic() - self._quiet_since) // quiet)
            if periods > 0:
                self.ceiling = min(self.size, self.ceiling + periods)
                self._quiet_since += periods * quiet
                log.info("smtp.pool_ceiling_raised", ceiling=self.ceiling)
        return self.ceiling

    def _refused(self, exc: Exception) -> None:
        """The server refused a new session while this pool has others: the ceiling comes
        down to those alive, logged once the opens under way are settled."""
        self._quiet_since = time.monotonic()
        ceiling = max(1, self.live)
        if ceiling < self.ceiling:
            if self._lowered_from is None:
                self._lowered_from = self.ceiling
            self._lowered_by = type(exc).__name__
            self.ceiling = ceiling
        self._log_lowered()

    def _log_lowered(self) -> None:
        if self._lowered_from is None or self._opening:
            return
        if self.ceiling < self._lowered_from:
            log.warning("smtp.pool_ceiling_lowered", ceiling=self.ceiling, error=self._lowered_by)
        self._lowered_from = None

    def _server_down(self) -> None:
        """A session could not be opened with none alive: the server is down (the caller
        says so), not taking fewer; what it takes is learnt again once it is back."""
        self.ceiling = self.size

    def _take_idle(self) -> _Session | None:
        while self._idle:
            session = self._idle.pop()
            fresh = time.monotonic() - session.last_used < self.settings.smtp_idle_seconds
            if fresh and session.is_connected:
                return session
            _close_quietly(session)
        return None

    def begin(self, sender: str, to: str) -> Begun | None:
        """Start the transaction of an email still being made (see `Begun`) on an idle
        session, when one is ready now and the server takes 8-bit bodies; else None (`send`
        does it all). `sender` and `to`: the From and To the email will have. Never opens
        a session (nor takes one a waiting send is owed)."""
        if self._slots.locked() or not self._idle or self._idle[-1].wire is None:
            return None
        if self._waiters:
            return None
        try:
            sender_address, recipients = _addresses(sender, to)
        except Exception:  # noqa: BLE001 - `send` refuses the email as it always has
            # ValueError for an address the parser refuses, but some that district.yaml takes
            # ("a@[10.0.0.1") make the email package's parser itself fail (AttributeError).
            return None
        task = asyncio.ensure_future(self._begin(sender_address, recipients))
        return Begun(sender_address, recipients, task, self._slots)

    async def _begin(self, sender: str, recipients: tuple[str, ...]) -> _Session | None:
        """MAIL, RCPT and DATA on an idle session: the session, holding a slot, once the
        server waits for the body; None (slot and session given back) when no session is
        ready, or any answer is not the expected one (`send` then does it all, as before)."""
        if self._slots.locked():
            return None
        await self._slots.acquire()  # not locked: returns at once
        session = self._take_idle()
        if session is None or session.wire is None:
            self._release(session)
            self._slots.release()
            return None
        try:
            ready = await _envelope_first(session, sender, recipients, self._timeout)
        except BaseException:
            session.close()
            self._slots.release()
            raise
        if not ready:
            session.close()  # in an unknown state, or waiting for a body: nothing accepted
            self._slots.release()
            return None
        return session

    async def send(self, message: EmailMessage, begun: Begun | None = None) -> str:
        """Send one message on a pooled session; return the reply or raise DeliveryError.
        `begun`: its transaction started by `begin`, used when its envelope is this email's
        (else given up, and the email sent as without it)."""
        session = await begun.take(message) if begun is not None else None
        if session is None or begun is None:
            async with self._slots:
                return await self._send_holding(message, None)
        try:
            return await self._send_holding(message, session, utf8=begun.utf8)
        finally:
            self._slots.release()

    async def _send_holding(
        self, message: EmailMessage, begun: _Session | None, *, utf8: bool = False
    ) -> str:
        """`send`, holding a slot; `begun`: a session whose server waits for the body."""
        session = begun
        reused = True
        try:
            if session is None:
                session, reused = await self._acquire()
            try:
                if begun is not None:
                    reply = await _body_only(begun, message, utf8=utf8, timeout=self._timeout)
                else:
                    reply = await self._send_on(session, message)
            except (_IdleDrop, aiosmtplib.SMTPServerDisconnected) as exc:
                # The server dropped a pooled session while it sat idle, before it answered
                # MAIL FROM: one retry on a new session is safe. (aiosmtplib's sessions,
                # kept only for servers without 8BITMIME, cannot tell when it dropped.)
                if not reused or not (isinstance(exc, _IdleDrop) or session.wire is None):
                    raise
                _close_quietly(session)
                session = None
                session, _ = await self._acquire(reuse=False)
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
            if session is None and self.live + self._opening >= self._ceiling_now():
                return self.ok  # every session the server takes is sending
            try:
                if session is None:
                    session = await self._open_counted()
                if session.wire is not None:
                    (noop,) = await session.wire.exchange(b"NOOP\r\n", 1, self._timeout)
                    if noop.code != 250:
                        raise aiosmtplib.SMTPResponseException(noop.code, noop.message)
                else:
                    await session.smtp.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if session is None and _refusal(exc) and self.live + self._opening:
                    self._refused(exc)  # the server takes no more: the sends tell
                    return self.ok
                _close_quietly(session)
                if session is None:
                    self._server_down()
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
        body = data_bytes(_raw(message, utf8=utf8))
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
        """A send is done with `session`: to the first waiting send, else idle; closed (no
        longer alive) when the server closed it."""
        if session is None:
            return
        if not session.is_connected:
            session.close()
            return
        session.last_used = time.monotonic()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(session)
                return
        self._idle.append(session)

    async def close(self) -> None:
        while self._idle:
            session = self._idle.pop()
            try:
                with contextlib.suppress(Exception):  # closing anyway
                    if session.wire is not None:
                        await session.wire.exchange(b"QUIT\r\n", 1, 2.0)
                    else:
                        await asyncio.wait_for(session.smtp.quit(), timeout=2)
            finally:
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


async def _envelope_first(
    session: _Session, sender: str, recipients: tuple[str, ...], timeout: float
) -> bool:
    """MAIL, RCPT and DATA of `Begun` (in one write with PIPELINING, else one at a time):
    whether every answer was the expected one, the server now waiting for the body."""
    wire = session.wire
    assert wire is not None
    utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))  # as Begun.utf8
    options = ["BODY=8BITMIME"]
    if utf8:
        if "smtputf8" not in session.extensions:
            return False
        options.append("SMTPUTF8")
    encoding = "utf-8" if utf8 else "ascii"
    mail = " ".join(["MAIL FROM:" + _quoted(sender), *options]).encode(encoding) + b"\r\n"
    commands = [mail, *(b"RCPT TO:" + _quoted(r).encode(encoding) + b"\r\n" for r in recipients)]
    commands.append(b"DATA\r\n")
    expected = [(250,), *([(250, 251)] * len(recipients)), (354,)]
    try:
        if "pipelining" in session.extensions:
            replies = await wire.exchange(b"".join(commands), len(commands), timeout)
            return all(r.code in ok for r, ok in zip(replies, expected, strict=True))
        for command, ok in zip(commands, expected, strict=True):
            (reply,) = await wire.exchange(command, 1, timeout)
            if reply.code not in ok:
                return False
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        return False
    return True


async def _body_only(
    session: _Session, message: EmailMessage, *, utf8: bool, timeout: float
) -> str:
    """The body of `message` on a session of `Begun`: the final reply, as `_transaction`'s."""
    assert session.wire is not None
    (final,) = await session.wire.exchange(data_bytes(_raw(message, utf8=utf8)), 1, timeout)
    return _done(final, [])


def _raw(message: EmailMessage, *, utf8: bool) -> bytes:
    """The message's bytes as sent on the lean path: written directly (wire.py) where they
    are what send_message would send (sender and recipients are ASCII), else the
    generator's, as send_message makes them."""
    raw = wire_bytes(message) if not utf8 else None
    if raw is None:
        raw = flatten_message(message, utf8=utf8, cte_type="8bit")
    return raw


async def learn_addresses(sender: str, recipients: Iterable[str]) -> int:
    """Work out the envelope of an email from `sender` to each of `recipients` ahead, so
    that no email pays for parsing its addresses (about 0.24 ms each with the email package,
    and in a district-wide emergency every principal's first alert would): the number
    learnt. Yields to the loop every few addresses, so a large directory never holds up
    an alert that arrives meanwhile; an address the parser refuses, or fails on (some that
    district.yaml takes make the email package raise AttributeError), is skipped and the
    rest still learnt (its email is refused as before). At most as many as the caches keep:
    learning more would only evict what was learnt first."""
    learnt = 0
    for n, to in enumerate(itertools.islice(recipients, _ADDRESSES_KEPT), 1):
        try:
            address, rcpts = _addresses(sender, to)
            for one in (address, *rcpts):
                _quoted(one)
        except Exception:  # noqa: BLE001 - any address: the task must learn the rest
            pass
        else:
            learnt += 1
        if n % _LEARN_BATCH == 0:
            await asyncio.sleep(0)
    return learnt


_LEARN_BATCH = 16  # ≈4 ms of parsing between turns of the loop
_ADDRESSES_KEPT = 16384


def _addresses(sender: str, to: str) -> tuple[str, tuple[str, ...]]:
    """MAIL FROM and RCPT TO of an email whose From and To are these, as `_envelope` takes
    them from its headers. Raises ValueError when either has no address."""
    return _envelope_cached((("from", sender), ("to", to)))


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
# Bounded well above a district's addresses (they all come from district.yaml).
_quoted = lru_cache(maxsize=_ADDRESSES_KEPT)(quote_address)


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TO as send_message takes them from the headers, worked out once
    per set of address headers (parsing them was ~3% of the notifier's CPU in a burst; the
    same few hundred From/To pairs come back). Raises ValueError as `_envelope_of`."""
    key = tuple(
        (name.lower(), str(value))
        for name, value in message.raw_items()
        if name.lower() in _ADDRESS_HEADERS
    )
    sender, recipients = _envelope_cached(key)
    return sender, list(recipients)


# The headers extract_sender and extract_recipients read (and Resent-Date, which decides
# which of them count).
_ADDRESS_HEADERS = frozenset(
    ["from", "sender", "to", "cc", "bcc", "resent-date"]
    + ["resent-" + h for h in ("from", "sender", "to", "cc", "bcc")]
)


@lru_cache(maxsize=_ADDRESSES_KEPT)
def _envelope_cached(headers: tuple[tuple[str, str], ...]) -> tuple[str, tuple[str, ...]]:
    message = EmailMessage()
    for name, value in headers:
        message[name] = value
    sender, recipients = _envelope_of(message)
    return sender, tuple(recipients)


def _envelope_of(message: EmailMessage) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TO as send_message takes them from `message`'s headers."""
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


def _give_up(waiter: asyncio.Future[_Session | None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _close_quietly(session: _Session | None) -> None:
    if session is not None:
        session.close()


def _refusal(exc: BaseException) -> bool:
    """Whether opening a session failed the way a server refuses one more connection: the
    connection refused, reset or closed, a 4xx greeting or EHLO (421: too many connections),
    a timeout. Not a 5xx, an authentication or a TLS failure."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError) and (
            400 <= exc.code < 500
        )
    return isinstance(
        exc,
        aiosmtplib.SMTPConnectError
        | aiosmtplib.SMTPServerDisconnected
        | aiosmtplib.SMTPTimeoutError
        | ConnectionError,
    )
