"""Reused SMTP sessions: a small pool of aiosmtplib connections per server.

A burst of alerts to one server pays the TCP + EHLO (+ STARTTLS + AUTH) cost once per pooled
session instead of once per message. A pool, not one session behind a lock: a recipient whose
server stalls holds only its own session, so the other alerts keep flowing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender

from services.notifier.channels import TransientDeliveryError, classify_smtp, scrub
from services.notifier.wire import wire_bytes
from services.runtime.metrics import SMTP_UP
from services.runtime.settings import Settings


@dataclass
class _Session:
    smtp: aiosmtplib.SMTP
    last_used: float


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
        self.connects += 1
        return _Session(smtp, time.monotonic())

    def _take_idle(self) -> _Session | None:
        while self._idle:
            session = self._idle.pop()
            fresh = time.monotonic() - session.last_used < self.settings.smtp_idle_seconds
            if fresh and session.smtp.is_connected:
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
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    # The server dropped a pooled session while it sat idle (before MAIL FROM
                    # was answered): one retry on a new session is safe.
                    _close_quietly(session)
                    session = await self._open()
                    reply = await self._send_on(session, message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._release(session)
                first = exc.recipients[0]
                raise classify_smtp(first.code, first.message) from None
            except aiosmtplib.SMTPResponseException as exc:
                # aiosmtplib sends RSET after a refused envelope: the session is reusable,
                # unless the server said it is closing it (421).
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

    async def _send_on(self, session: _Session, message: EmailMessage) -> str:
        smtp = session.smtp
        raw = None
        # The bytes written directly (wire.py) where they are what send_message would send:
        # the server said EHLO with 8BITMIME, and sender and recipients are ASCII.
        if not smtp.is_ehlo_or_helo_needed and smtp.supports_extension("8bitmime"):
            raw = wire_bytes(message)
        envelope = _ascii_envelope(message) if raw is not None else None
        if raw is not None and envelope is not None:
            sender, recipients = envelope
            errors, reply = await smtp.sendmail(
                sender, recipients, raw, mail_options=["BODY=8BITMIME"]
            )
        else:
            errors, reply = await smtp.send_message(message)
        if errors:
            code, text = next(iter(errors.values()))
            raise aiosmtplib.SMTPResponseException(code, text)
        return scrub(reply)

    def _release(self, session: _Session | None) -> None:
        if session is None:
            return
        if session.smtp.is_connected:
            session.last_used = time.monotonic()
            self._idle.append(session)

    async def close(self) -> None:
        while self._idle:
            session = self._idle.pop()
            try:
                await asyncio.wait_for(session.smtp.quit(), timeout=2)
            except Exception:  # noqa: BLE001 - closing anyway
                session.smtp.close()


def _ascii_envelope(message: EmailMessage) -> tuple[str, list[str]] | None:
    """MAIL FROM and RCPT TO as send_message takes them from the headers; None unless all
    are ASCII (SMTPUTF8 is left to send_message) or when a header is missing."""
    try:
        sender = extract_sender(message)
        recipients = extract_recipients(message)
    except ValueError:
        return None
    if sender is None or not recipients:
        return None
    if not sender.isascii() or not all(r.isascii() for r in recipients):
        return None
    return sender, recipients


def _close_quietly(session: _Session | None) -> None:
    if session is not None:
        session.smtp.close()
