"""The audit ledger service (`dooralert audit serve`), DESIGN §6.

Reads DOORALERT in stream-sequence order, keeps the RFC 6962 tree over leaf format v2 (the
subject, a newline, the exact payload bytes; leaf index = seq − 1), and signs a checkpoint at
least every `every` events and every `seconds` seconds while the log grows, at once after an
`incident.resolved` event (and sets `resolved_signed`, which wakes the witnesses: see
witness.py), plus one on a clean stop. Each checkpoint is appended
to DOORALERT_CHECKPOINTS (Nats-Msg-Id `<size>-<root hex>`, so a retried publish is dropped)
and, optionally, written as a file into a directory outside the system.

Resuming: each checkpoint message carries the tree's compact range in the header
`Dooralert-Compact-Range` (`<size> <base64 subtree roots…>`, ≤ 64 hashes). On start the
ledger reads the last checkpoint on its subject, checks the note is signed by its own key and
that the compact range has the same size and folds to the same root as the signed note, and
continues from seq size + 1, reading nothing before it. The state rides on the checkpoint
message itself rather than in a KV entry so that the signed root and the state to continue
from are written in one append and can never disagree; the signed root also cross-checks the
unsigned header. When the header is missing or does not match, the ledger rebuilds the tree
from seq 1 and refuses to go on (ForkRefused) if the log no longer hashes to the last signed
root. When the last checkpoint is not signed by the ledger's key (a rotated key), it rebuilds
from seq 1 without that check and says so in the log. When DOORALERT_CHECKPOINTS has no
checkpoint of its origin, it resumes from the copy in its checkpoint directory (`latest.txt`),
rebuilding and checking the tree against it; with neither, on a log that is not empty, it warns
(`ledger.fresh`, the log's size) before hashing the whole log: never a silent fresh start.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.audit.merkle import CompactRange, MerkleError, leaf_input
from services.audit.note import (
    Checkpoint,
    NoteError,
    Signer,
    open_checkpoint,
    parse_note,
    sign_checkpoint,
)
from services.eventlog import (
    CHECKPOINTS_STREAM,
    READ_INTERRUPTED_ERRORS,
    STREAM,
    read_from,
    retrying,
    subscribe_from,
)
from services.runtime import metrics
from services.runtime.logging import get_logger

log = get_logger("dooralert.ledger")

DEFAULT_EVERY = 1000
DEFAULT_SECONDS = 10.0
# After a fetch that did not fill its batch, wait this long (at most a tenth of `seconds`)
# before the next: anchoring is due within `seconds`, not at once, so during a burst the
# events gather and one fetch (one pull request, one wake-up) takes many of them instead of
# one pull per handful (the pull round trips were most of the ledger's CPU per event).
DEFAULT_PACE = 0.2
STALL_CHECK_SECONDS = 5.0
# Caught up and everything anchored, the ledger waits for the next event with one pull
# request of one message lasting this long (answered the moment an event is stored), not a
# fetch of `batch` every half second: that polled 2 pull requests and 2 status replies per
# 0.5 s, and once the last checkpoint was `seconds` old (its deadline then read as past) one
# every 0.05 s, for as long as the log stayed idle.
IDLE_WAIT = STALL_CHECK_SECONDS
H_SIZE = "Dooralert-Tree-Size"
H_RANGE = "Dooralert-Compact-Range"
H_KEY = "Dooralert-Log-Key"
RESOLVED_SUFFIX = ".incident.resolved"


class LedgerError(Exception):
    """The ledger cannot go on without a person looking (permanent)."""


class LogGapError(LedgerError):
    """DOORALERT has no message at a sequence the tree needs next."""


class ForkRefused(LedgerError):
    """The log no longer hashes to the last signed root; signing on would fork the ledger."""


def checkpoint_subject(origin: str) -> str:
    """`dooralert_checkpoints.<origin as one token>`."""
    return "dooralert_checkpoints." + re.sub(r"[^A-Za-z0-9_-]", "_", origin)


def checkpoint_due(*, unanchored: int, seconds_since: float, every: int, seconds: float) -> bool:
    """Sign when enough events are waiting, or the oldest wait has gone on long enough."""
    return unanchored > 0 and (unanchored >= every or seconds_since >= seconds)


def message_id(cp: Checkpoint) -> str:
    """The checkpoint's Nats-Msg-Id: the same tree signs into one message."""
    return f"{cp.size}-{cp.root.hex()}"


class Ledger:
    """The audit ledger: follows DOORALERT, keeps the tree, signs checkpoints."""

    def __init__(
        self,
        js: JetStreamContext,
        signer: Signer,
        *,
        origin: str,
        every: int = DEFAULT_EVERY,
        seconds: float = DEFAULT_SECONDS,
        out_dir: Path | None = None,
        batch: int = 500,
        pace: float = DEFAULT_PACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every < 1 or seconds <= 0:
            raise ValueError("checkpoint every must be ≥ 1 event and seconds > 0")
        self.js = js
        self.signer = signer
        self.origin = origin
        self.every = every
        self.seconds = seconds
        self.out_dir = out_dir
        self.batch = batch
        self.pace = min(pace, seconds / 10)
        self.clock = clock
        self.subject = checkpoint_subject(origin)
        self.tree = CompactRange()
        self.last: Checkpoint | None = None
        self.latest_note: str | None = None  # the last signed note, for the witnesses
        # Set when a checkpoint covering an `incident.resolved` has been signed.
        self.resolved_signed = asyncio.Event()
        self._resolved_pending = False
        self._behind = 0  # messages the server still had for the ledger after its last fetch
        self.events_read = 0  # payloads hashed by this process (resume reads none before size)
        self.resumed_from = 0
        self._anchored = 0
        self._since = clock()
        self.following = False  # reading the log (readiness)

    # -- resume -------------------------------------------------------------------------

    async def resume(self) -> None:
        """Restore the tree from the last checkpoint (see the module docstring)."""
        found = await self._last_checkpoint()
        if found is None:
            return
        note, headers = found
        try:
            cp = open_checkpoint(note, self.signer.verifier)
        except NoteError as exc:
            claimed = _claimed_size(note)
            log.warning(
                "ledger.rebuild",
                reason=f"last checkpoint not signed by this key: {exc}",
                claimed_size=claimed,
            )
            return
        try:
            tree = CompactRange.loads(headers.get(H_RANGE, ""))
        except MerkleError as exc:
            tree = None
            log.warning(
                "ledger.rebuild", reason=f"checkpoint state unreadable: {exc}", size=cp.size
            )
        last_seq = (await self.js.stream_info(STREAM)).state.last_seq
        if last_seq < cp.size:
            raise ForkRefused(
                f"DOORALERT ends at seq {last_seq} but the last checkpoint signed size {cp.size}: "
                "the log was truncated or restored from an older copy. The ledger will not sign "
                "a fork; run `dooralert audit verify` and investigate."
            )
        if tree is None or tree.size != cp.size or tree.root() != cp.root:
            tree = await self._rebuild(cp)
        self.tree = tree
        self.last = cp
        self.latest_note = note
        self._anchored = self.resumed_from = cp.size
        log.info("ledger.resumed", origin=self.origin, size=cp.size, root=cp.root.hex())

    async def _last_checkpoint(self) -> tuple[str, dict[str, str]] | None:
        """The last checkpoint note and its headers; with none in DOORALERT_CHECKPOINTS, the
        copy outside the system (`out_dir/latest.txt`, no headers: the tree is rebuilt and
        must hash to it); None when neither exists, said loudly if the log is not empty."""
        try:
            raw = await self.js.get_last_msg(CHECKPOINTS_STREAM, self.subject)
            return (raw.data or b"").decode("utf-8", errors="replace"), dict(raw.headers or {})
        except NotFoundError:
            pass
        outside = self.out_dir / "latest.txt" if self.out_dir is not None else None
        if outside is not None and outside.is_file():
            # DOORALERT_CHECKPOINTS lost its notes (the stream deleted and provisioned anew):
            # never a fresh tree over a log already signed, which would hide any change made
            # to it meanwhile; the log must still hash to the copy kept outside.
            log.warning("ledger.checkpoints_missing", origin=self.origin, resume_from=str(outside))
            return outside.read_text(encoding="utf-8"), {}
        size = (await self.js.stream_info(STREAM)).state.last_seq
        if size:
            # Not silent: the whole log is hashed from seq 1 (minutes on a big log) and a
            # checkpoint of it signed as the first of this origin.
            log.warning(
                "ledger.fresh",
                origin=self.origin,
                log_size=size,
                reason="no checkpoint of this origin: hashing the log from seq 1",
            )
        else:
            log.info("ledger.fresh", origin=self.origin)
        return None

    async def _rebuild(self, cp: Checkpoint) -> CompactRange:
        tree = CompactRange()
        gen = read_from(self.js, start_seq=1, batch=self.batch)
        async with contextlib.aclosing(gen):
            async for msgs in gen:
                for m in msgs:
                    if tree.size == cp.size:
                        break
                    self._take(tree, m.metadata.sequence.stream, m.subject, m.data)
                if tree.size == cp.size:
                    break
        if tree.size != cp.size or tree.root() != cp.root:
            raise ForkRefused(
                f"DOORALERT does not hash to the last signed checkpoint (size {cp.size}, root "
                f"{cp.root.hex()}; the log has {tree.size} events, root {tree.root().hex()}): "
                "it was changed or truncated (or that checkpoint predates leaf format v2: then "
                "start a new log origin, DOORALERT_LOG_ORIGIN). Run `dooralert audit verify` and "
                "investigate; the ledger will not sign a fork."
            )
        return tree

    def _take(self, tree: CompactRange, seq: int, subject: str, data: bytes) -> None:
        if seq != tree.size + 1:
            raise LogGapError(f"DOORALERT seq {tree.size + 1} is missing (next is {seq})")
        tree.append(leaf_input(subject, data))
        self.events_read += 1
        if tree is self.tree:
            metrics.LEDGER_TREE_SIZE.set(tree.size)

    # -- checkpoints ----------------------------------------------------------------------

    async def checkpoint(self) -> Checkpoint:
        """Sign the tree at its current size and append the note (idempotent)."""
        cp = Checkpoint(self.origin, self.tree.size, self.tree.root())
        note = sign_checkpoint(self.signer, cp)
        headers = {
            "Nats-Msg-Id": message_id(cp),
            H_SIZE: str(cp.size),
            H_RANGE: self.tree.dumps(),
            H_KEY: self.signer.verifier.line,
        }
        await _publish(self.js, self.subject, note.encode(), headers)
        if self.out_dir is not None:
            _write_file(self.out_dir, cp, note)
        self.last = cp
        self.latest_note = note
        self._anchored = cp.size
        self._since = self.clock()
        metrics.checkpoint_signed(cp.size)
        if self._resolved_pending and not self._behind:
            # Only once caught up: a backlog (a restart after a long outage) holds resolved
            # incidents in nearly every batch, and waking the witnesses for each would mail
            # them a checkpoint per batch; they get the one that covers the whole backlog.
            self._resolved_pending = False
            self.resolved_signed.set()
        log.info("checkpoint.signed", origin=self.origin, size=cp.size, root=cp.root.hex())
        return cp

    def _due(self) -> bool:
        return checkpoint_due(
            unanchored=self.tree.size - self._anchored,
            seconds_since=self.clock() - self._since,
            every=self.every,
            seconds=self.seconds,
        )

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until `stop` is set; then sign what is unanchored and return."""
        await self.resume()
        self._since = self.clock()
        # "Since the last checkpoint" counts from the start: a restart is not a signature.
        metrics.checkpoint_signed(self._anchored)
        metrics.LEDGER_TREE_SIZE.set(self.tree.size)
        psub = await self._subscribe()
        self.following = True
        idle_since = self.clock()
        idle = False  # the last fetch found nothing
        try:
            while not stop.is_set():
                try:
                    msgs = await self._next(psub, stop, idle=idle)
                    idle_since = self.clock()
                    idle = False
                except (NatsTimeoutError, TimeoutError):
                    # nats-py raises a plain TimeoutError too, when its fetch's time ran out
                    # between its two pull requests: nothing came, not a lost consumer (taken
                    # as one, it logged `ledger.fetch_failed` and made a new consumer every
                    # 10 s while the log was idle).
                    idle = True
                    msgs = []
                    if self.clock() - idle_since >= STALL_CHECK_SECONDS:
                        idle_since = self.clock()
                        if await self._stalled():
                            psub = await self._resubscribe(psub, stop)
                except READ_INTERRUPTED_ERRORS as exc:
                    log.warning("ledger.fetch_failed", error=repr(exc))
                    await asyncio.sleep(0.5)
                    psub = await self._resubscribe(psub, stop)
                    continue
                if msgs:
                    self._behind = msgs[-1].metadata.num_pending or 0
                for m in msgs:
                    seq = m.metadata.sequence.stream
                    if seq <= self.tree.size:
                        continue  # redelivered after a resubscribe
                    if seq > self.tree.size + 1:
                        await self._check_gap(self.tree.size + 1, seq)
                        psub = await self._resubscribe(psub, stop)
                        break
                    self._take(self.tree, seq, m.subject, m.data)
                    # Resolution is when an auditor most wants a copy outside NATS.
                    self._resolved_pending |= m.subject.endswith(RESOLVED_SUFFIX)
                    if self.tree.size - self._anchored >= self.every:
                        await self.checkpoint()
                resolved = self._resolved_pending and not self._behind
                if self._due() or (resolved and self.tree.size > self._anchored):
                    await self.checkpoint()
                if 0 < len(msgs) < self.batch and self.pace > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.pace)
        finally:
            self.following = False
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
        if self.tree.size > self._anchored:
            await self.checkpoint()

    async def _next(
        self, psub: JetStreamContext.PullSubscription, stop: asyncio.Event, *, idle: bool
    ) -> list[Msg]:
        """The next messages: a fetch of up to `batch` lasting until the next checkpoint is
        due (at most 0.5 s) while events come, or, idle with nothing unanchored, one pull of
        one message lasting IDLE_WAIT (the fetch after it takes the rest). Returns [] when
        `stop` is set first; raises nats' TimeoutError when nothing came."""
        if idle and self.tree.size == self._anchored:
            batch, wait = 1, IDLE_WAIT
        else:
            batch, wait = self.batch, max(0.05, min(0.5, self.seconds - self.clock() + self._since))
        fetch = asyncio.ensure_future(psub.fetch(batch, timeout=wait))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((fetch, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()  # stopping: what the pull brings after this is not needed
        return fetch.result() if fetch.done() and not fetch.cancelled() else []

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        return await subscribe_from(self.js, self.tree.size + 1, inactive_threshold=60.0)

    async def _resubscribe(
        self, old: JetStreamContext.PullSubscription, stop: asyncio.Event
    ) -> JetStreamContext.PullSubscription:
        """A fresh reader from the tree's next seq, retried while NATS is unavailable (for as
        long as it takes, unless the ledger is stopping)."""
        with contextlib.suppress(Exception):
            await old.unsubscribe()
        # Any answer but success is worth another try here (a 409 or 500 while a stream
        # recovers): a ledger that gave up would stop signing. Backoff up to 5 s keeps a long
        # outage from flooding the log.
        return await retrying(
            self._subscribe,
            retry_for=math.inf,
            what="ledger.subscribe",
            stop=stop,
            errors=READ_INTERRUPTED_ERRORS,
            max_delay=5.0,
        )

    async def _stalled(self) -> bool:
        """Idle, yet the stream holds more than the tree: the consumer was lost (a server
        restart drops in-memory ephemeral consumers); the caller subscribes again."""
        try:
            last_seq = (await self.js.stream_info(STREAM)).state.last_seq
        except READ_INTERRUPTED_ERRORS:
            return False
        metrics.LEDGER_LOG_SIZE.set(last_seq)
        if last_seq > self.tree.size:
            log.warning(
                "ledger.resubscribe", reason="stalled", size=self.tree.size, last_seq=last_seq
            )
            return True
        return False

    async def _check_gap(self, expected: int, got: int) -> None:
        try:
            await self.js.get_msg(STREAM, seq=expected)
        except NotFoundError:
            raise LogGapError(
                f"DOORALERT has no message at seq {expected} (the next is {got}): the log has a "
                "gap, so no checkpoint can cover it. Was a message deleted or expired by max_age?"
            ) from None
        log.warning("ledger.resubscribe", expected=expected, got=got)


def _claimed_size(note: str) -> int | None:
    try:
        return Checkpoint.parse(parse_note(note).text).size
    except NoteError:
        return None


async def _publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    headers: dict[str, str],
    *,
    retry_for: float = 30.0,
) -> None:
    await retrying(
        lambda: js.publish(
            subject, payload, stream=CHECKPOINTS_STREAM, timeout=2.0, headers=headers
        ),
        retry_for=retry_for,
        what="checkpoint.publish",
        subject=subject,
    )


def _write_file(directory: Path, cp: Checkpoint, note: str) -> None:
    """`<dir>/checkpoint-<size>.txt` and `<dir>/latest.txt`, each written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (f"checkpoint-{cp.size:012d}.txt", "latest.txt"):
        tmp = directory / f".{name}.tmp"
        tmp.write_text(note, encoding="utf-8")
        tmp.replace(directory / name)
