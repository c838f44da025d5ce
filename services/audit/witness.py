"""Witnesses: copies of the ledger's latest checkpoint kept outside NATS (DESIGN §6).

The contacts named under `audit.witnesses` in district.yaml get the latest signed checkpoint
every `DOORALERT_WITNESS_SECONDS` (when it changed since they last got one) and at once when a
checkpoint covers an `incident.resolved`. By e-mail the body is the signed note exactly
(text/plain, UTF-8), so a witness can save the message as .eml and an auditor can pass it to
`dooralert audit verify --trusted`; by webhook the note is POSTed as text/plain. An admin who
rewrites or cuts the log, or deletes the checkpoint stream, cannot reach these copies.

SMTP is configured as for the notifier (`DOORALERT_SMTP_*`), used directly: the audit service
does not import the notifier. A failed send is logged and retried next round; it never stops
the ledger. Logs name contacts by id, never by address.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Literal

import aiosmtplib
import httpx

from services.audit.note import Checkpoint, NoteError, parse_note
from services.domain.directory import Directory
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.witness")

Latest = Callable[[], str | None]  # the latest signed checkpoint note, if any


@dataclass(frozen=True)
class WitnessTarget:
    contact_id: str
    channel: Literal["email", "webhook"]
    address: str  # an e-mail address or URL: contact details, never logged


def witness_targets(directory: Directory) -> list[WitnessTarget]:
    """Every e-mail and webhook channel of the contacts under `audit.witnesses`."""
    targets: list[WitnessTarget] = []
    for cid in directory.audit.witnesses:
        contact = directory.contact(cid)
        for ch in contact.channels if contact else []:
            if ch.type == "email":
                targets.append(WitnessTarget(cid, "email", ch.address))
            elif ch.type == "webhook":
                targets.append(WitnessTarget(cid, "webhook", ch.url))
    return targets


def checkpoint_email(note: str, cp: Checkpoint, *, to: str, sender: str) -> EmailMessage:
    """The witness e-mail: the signed note as its whole text/plain body."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"dooralert checkpoint {cp.origin} size {cp.size}"
    msg["Message-ID"] = make_msgid(domain="dooralert.invalid")
    msg["X-Dooralert-Checkpoint"] = f"{cp.size} {cp.root.hex()}"
    # Quoted-printable keeps every byte of the note (the em dash, the long signature line)
    # through any mail relay, and the saved .eml stays readable.
    msg.set_content(note, subtype="plain", charset="utf-8", cte="quoted-printable")
    return msg


class Witnesses:
    """Sends the latest checkpoint to every witness target; remembers what each one has."""

    def __init__(
        self,
        targets: list[WitnessTarget],
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.targets = targets
        self.settings = settings
        self._http = http
        self._has: dict[WitnessTarget, int] = {}  # the tree size each target last received
        self.failures = 0

    async def round(self, note: str) -> int:
        """Send `note` to every target that does not have it yet; the number that failed."""
        try:
            cp = Checkpoint.parse(parse_note(note).text)
        except NoteError as exc:
            log.error("witness.unreadable_checkpoint", error=str(exc))
            return len(self.targets)
        failed = 0
        for target in self.targets:
            if self._has.get(target, -1) >= cp.size:
                continue
            try:
                await self._send(target, note, cp)
            except Exception as exc:  # noqa: BLE001 - a witness never stops the ledger
                failed += 1
                log.warning(
                    "witness.failed",
                    contact=target.contact_id,
                    channel=target.channel,
                    size=cp.size,
                    error=_describe(exc),
                    retry="next round",
                )
                continue
            self._has[target] = cp.size
            log.info(
                "witness.sent", contact=target.contact_id, channel=target.channel, size=cp.size
            )
        self.failures += failed
        return failed

    async def _send(self, target: WitnessTarget, note: str, cp: Checkpoint) -> None:
        if target.channel == "email":
            await self._email(target.address, note, cp)
        else:
            await self._post(target.address, note, cp)

    async def _email(self, to: str, note: str, cp: Checkpoint) -> None:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        await aiosmtplib.send(
            checkpoint_email(note, cp, to=to, sender=s.smtp_from),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=password,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            timeout=s.smtp_timeout,
        )

    async def _post(self, url: str, note: str, cp: Checkpoint) -> None:
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "X-Dooralert-Checkpoint": f"{cp.size} {cp.root.hex()}",
        }
        async with contextlib.AsyncExitStack() as stack:
            client = self._http
            if client is None:
                client = httpx.AsyncClient(timeout=self.settings.webhook_timeout)
                await stack.enter_async_context(client)
            resp = await client.post(url, content=note.encode(), headers=headers)
            resp.raise_for_status()

    async def run(self, stop: asyncio.Event, latest: Latest, wake: asyncio.Event) -> None:
        """A round every `witness_seconds`, and one whenever `wake` is set, until `stop`."""
        seconds = self.settings.witness_seconds
        while not stop.is_set():
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, wake)]
            try:
                await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            if stop.is_set():
                return
            wake.clear()
            note = latest()
            if note is not None and self.targets:
                await self.round(note)


def _describe(exc: BaseException) -> str:
    """The error without addresses or URLs (they are contact details, and may hold tokens)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.code}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__
