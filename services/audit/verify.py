"""`dooralert audit verify`: is the log exactly what the signed checkpoints commit to? (pure)

Checks, per DESIGN §6: sequences contiguous from 1; every checkpoint signed by the trusted
key; every checkpoint's root equal to the root recomputed over the first `size` payloads; no
two valid checkpoints of one size with different roots (a fork). Events after the last
checkpoint are reported as unanchored (a warning, not a failure).

The hot loop hashes with hashlib directly and parses no events: only `seq` and the payload
bytes matter. Feed it from an export (`iter_export`) or from NATS (see source.py).
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.audit.merkle import EMPTY_ROOT, fold_root
from services.audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    open_checkpoint,
    parse_note,
    split_notes,
)

EVENTS_FILE = "events.jsonl"
CHECKPOINTS_FILE = "checkpoints.txt"
KEY_FILE = "log-key.pub"


class ExportFormatError(ValueError):
    """An export directory or line that is not in the format `audit export` writes."""


@dataclass(order=True)
class Finding:
    position: int  # the log sequence (or tree size) it concerns; findings sort by it
    message: str = field(compare=False)


@dataclass
class VerifyResult:
    verifier: Verifier
    events: int = 0
    checkpoints: int = 0
    valid_checkpoints: int = 0
    anchored: int = 0
    errors: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding is an error."""
        return not self.errors

    def render(self) -> str:
        """The findings and the verdict, as `audit verify` prints them."""
        key = f"{self.verifier.name}+{self.verifier.key_id.hex()}"
        lines = [
            f"{self.events} events, {self.checkpoints} checkpoints "
            f"({self.valid_checkpoints} signed by {key}); {self.anchored} events anchored"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        errors = sorted(self.errors)
        lines += [f"error: {e.message}" for e in errors]
        lines.append("OK" if self.ok else f"FAILED: {errors[0].message}")
        return "\n".join(lines)


def _describe(index: int, note: str) -> tuple[str, int]:
    """`checkpoint #i (size n)` for a note whose signature may be bad, and its claimed size."""
    try:
        cp = Checkpoint.parse(parse_note(note).text)
    except NoteError:
        return f"checkpoint #{index}", 0
    return f"checkpoint #{index} (size {cp.size})", cp.size


class LogVerifier:
    """Feed (seq, payload) pairs in order, then `finish()`; holds O(log n) state."""

    def __init__(self, notes: Sequence[str], verifier: Verifier, *, origin: str | None = None):
        self.result = VerifyResult(verifier=verifier, checkpoints=len(notes))
        self._origin = origin
        # size -> (checkpoint number, root) for the valid checkpoints
        self._by_size: dict[int, tuple[int, bytes]] = {}
        self._last_ok_size = 0
        self._stack: list[bytes] = []
        self._n = 0
        self._broken_at: int | None = None
        self._check_notes(notes, verifier)
        self._targets = sorted(self._by_size)
        self._next_target = 0
        if self._targets and self._targets[0] == 0:
            self._check_root(0, EMPTY_ROOT)

    def _error(self, position: int, message: str) -> None:
        self.result.errors.append(Finding(position, message))

    def _check_notes(self, notes: Sequence[str], verifier: Verifier) -> None:
        first: tuple[str, int] | None = None  # the first valid checkpoint's origin and number
        for i, note in enumerate(notes, 1):
            name, claimed = _describe(i, note)
            try:
                cp = open_checkpoint(note, verifier)
            except NoteError as exc:
                self._error(claimed, f"{name}: {exc}")
                continue
            if self._origin is not None and cp.origin != self._origin:
                self._error(cp.size, f"{name}: origin {cp.origin!r}, expected {self._origin!r}")
                continue
            if first is None:
                first = (cp.origin, i)
            elif cp.origin != first[0]:
                self._error(
                    cp.size,
                    f"{name}: origin {cp.origin!r} differs from checkpoint "
                    f"#{first[1]}'s {first[0]!r}",
                )
                continue
            self.result.valid_checkpoints += 1
            seen = self._by_size.get(cp.size)
            if seen is None:
                self._by_size[cp.size] = (i, cp.root)
            elif seen[1] != cp.root:
                self._error(
                    cp.size,
                    f"fork at size {cp.size}: checkpoints #{seen[0]} and #{i} "
                    "are both validly signed but have different roots",
                )

    def _check_root(self, size: int, root: bytes) -> None:
        index, want = self._by_size[size]
        if root == want:
            self._last_ok_size = size
        else:
            self._error(
                self._last_ok_size + 1,
                f"checkpoint #{index} (size {size}): root does not match the log; "
                f"the log differs from the signed one at some sequence in "
                f"{self._last_ok_size + 1}..{size}",
            )
        self._next_target += 1

    def feed(self, entries: Iterable[tuple[int, bytes]]) -> None:
        """Hash the next entries; call as often as needed, in stream order."""
        if self._broken_at is not None:
            return
        sha = hashlib.sha256
        stack = self._stack
        n = self._n
        targets = self._targets
        target = targets[self._next_target] if self._next_target < len(targets) else -1
        try:
            for seq, data in entries:
                if seq != n + 1:
                    what = "a gap" if seq > n + 1 else "out of order or repeated"
                    self._error(n + 1, f"sequence {what}: expected seq {n + 1}, found seq {seq}")
                    self._broken_at = n + 1
                    break
                h = sha(b"\x00" + data).digest()
                m = n
                while m & 1:
                    h = sha(b"\x01" + stack.pop() + h).digest()
                    m >>= 1
                stack.append(h)
                n += 1
                if n == target:
                    self._n = n
                    self._check_root(n, fold_root(stack))
                    target = targets[self._next_target] if self._next_target < len(targets) else -1
        finally:
            self._n = n

    @property
    def events_seen(self) -> int:
        """How many events have been fed."""
        return self._n

    def fail(self, position: int, message: str) -> None:
        """Record an input error (unreadable export line…) and stop hashing."""
        self._error(position, message)
        if self._broken_at is None:
            self._broken_at = position

    def finish(self) -> VerifyResult:
        """The verdict over every event fed and every checkpoint given."""
        r = self.result
        r.events = self._n
        key = f"{r.verifier.name}+{r.verifier.key_id.hex()}"
        for size in self._targets[self._next_target :]:
            index = self._by_size[size][0]
            if self._broken_at is not None:
                self._error(
                    self._broken_at,
                    f"checkpoint #{index} (size {size}) not checked: "
                    f"the log is broken at seq {self._broken_at}",
                )
            else:
                self._error(
                    self._n + 1,
                    f"checkpoint #{index} (size {size}) covers {size} events but the log "
                    f"has {self._n}: seq {self._n + 1}..{size} are missing (truncated)",
                )
        covered = max(self._by_size, default=0)
        r.anchored = min(covered, self._n)
        if self._broken_at is None:
            if not self._by_size and self._n:
                self._error(
                    self._n + 1, f"no checkpoint signed by {key}: all {self._n} events unanchored"
                )
            elif self._n > covered:
                r.warnings.append(
                    f"{self._n - covered} events after the last checkpoint "
                    f"(seq {covered + 1}..{self._n}) are unanchored"
                )
        return r


def iter_export(path: Path) -> Iterator[tuple[int, bytes]]:
    """(seq, payload) from an events.jsonl; a bad line is an ExportFormatError naming it."""
    loads = json.loads
    a2b = binascii.a2b_base64
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                obj = loads(line)
                yield obj["seq"], a2b(obj["data"], strict_mode=True)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise ExportFormatError(f"{path.name} line {lineno}: {exc}") from exc


def verify_export(
    directory: Path,
    verifier: Verifier,
    *,
    origin: str | None = None,
    extra_notes: Sequence[str] = (),
) -> VerifyResult:
    """Verify an `audit export` directory against the trusted key."""
    events = directory / EVENTS_FILE
    if not events.is_file():
        raise ExportFormatError(f"{events} does not exist; is {directory} an export?")
    cps = directory / CHECKPOINTS_FILE
    notes = split_notes(cps.read_text(encoding="utf-8")) if cps.is_file() else []
    lv = LogVerifier([*notes, *extra_notes], verifier, origin=origin)
    try:
        lv.feed(iter_export(events))
    except ExportFormatError as exc:
        lv.fail(lv.events_seen + 1, str(exc))
    return lv.finish()
