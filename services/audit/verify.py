"""`dooralert audit verify`: is the log exactly what the signed checkpoints commit to? (pure)

Checks, per DESIGN §6: sequences contiguous from 1; every payload is the event its subject
names (type, school, incident); every checkpoint signed by the trusted key; every
checkpoint's root equal to the root recomputed over the first `size` leaves (format v2:
subject ‖ LF ‖ payload); no two valid checkpoints of one size with different roots (a fork);
the log extends every trusted checkpoint (`--trusted`) and is at least as long. Events after
the last checkpoint are reported as unanchored (a warning, not a failure).

The hot loop hashes with hashlib directly and decodes each payload with json.loads only to
compare three fields. Feed it from an export (`iter_export`) or from NATS (see source.py).
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.audit.manifest import check_manifest
from services.audit.merkle import EMPTY_ROOT, fold_root
from services.audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    open_checkpoint,
    parse_note,
    split_notes,
)
from services.audit.subjects import subject_problem

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
    trusted: int = 0
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
            f"({self.valid_checkpoints} signed by {key}), {self.trusted} trusted; "
            f"{self.anchored} events anchored"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        errors = sorted(self.errors)
        lines += [f"error: {e.message}" for e in errors]
        lines.append("OK" if self.ok else f"FAILED: {errors[0].message}")
        return "\n".join(lines)


def _describe(label: str, note: str) -> tuple[str, int]:
    """`<label> (size n)` for a note whose signature may be bad, and its claimed size."""
    try:
        cp = Checkpoint.parse(parse_note(note).text)
    except NoteError:
        return label, 0
    return f"{label} (size {cp.size})", cp.size


Named = tuple[str, str]  # (how findings name it, the signed note)
MAX_SUBJECT_ERRORS = 100  # a wholly rewritten log would otherwise print a million lines


class LogVerifier:
    """Feed (seq, subject, payload) triples in order, then `finish()`; holds O(log n) state.

    `notes` are the log's own checkpoints; `trusted` are (label, note) pairs an auditor kept
    outside the system (a witness's copy): the log must extend each of them and be at least as
    long, so a rollback or a rewrite after deleting the checkpoints fails against them.
    """

    def __init__(
        self,
        notes: Sequence[str],
        verifier: Verifier,
        *,
        origin: str | None = None,
        trusted: Sequence[Named] = (),
    ):
        self.result = VerifyResult(verifier=verifier, checkpoints=len(notes), trusted=len(trusted))
        self._origin = origin
        # size -> (label, root) for the valid checkpoints
        self._by_size: dict[int, tuple[str, bytes]] = {}
        self._own_sizes: list[int] = []
        self._last_ok_size = 0
        self._stack: list[bytes] = []
        self._n = 0
        self._broken_at: int | None = None
        self._subject_errors = 0
        own = [(f"checkpoint #{i}", n) for i, n in enumerate(notes, 1)]
        self._check_notes(own, verifier, own=True)
        self._check_notes([(f"trusted checkpoint {label}", n) for label, n in trusted], verifier)
        self._targets = sorted(self._by_size)
        self._next_target = 0
        if self._targets and self._targets[0] == 0:
            self._check_root(0, EMPTY_ROOT)

    def _error(self, position: int, message: str) -> None:
        self.result.errors.append(Finding(position, message))

    def _check_notes(
        self, notes: Sequence[Named], verifier: Verifier, *, own: bool = False
    ) -> None:
        for label, note in notes:
            name, claimed = _describe(label, note)
            try:
                cp = open_checkpoint(note, verifier)
            except NoteError as exc:
                self._error(claimed, f"{name}: {exc}")
                continue
            if self._origin is not None and cp.origin != self._origin:
                self._error(cp.size, f"{name}: origin {cp.origin!r}, expected {self._origin!r}")
                continue
            if self._first is None:
                self._first = (cp.origin, label)
            elif cp.origin != self._first[0]:
                self._error(
                    cp.size,
                    f"{name}: origin {cp.origin!r} differs from {self._first[1]}'s "
                    f"{self._first[0]!r}",
                )
                continue
            if own:
                self.result.valid_checkpoints += 1
                self._own_sizes.append(cp.size)
            seen = self._by_size.get(cp.size)
            if seen is None:
                self._by_size[cp.size] = (label, cp.root)
            elif seen[1] != cp.root:
                self._error(
                    cp.size,
                    f"fork at size {cp.size}: {seen[0]} and {label} "
                    "are both validly signed but have different roots",
                )

    _first: tuple[str, str] | None = None  # the first valid checkpoint's origin and label

    def _check_root(self, size: int, root: bytes) -> None:
        label, want = self._by_size[size]
        if root == want:
            self._last_ok_size = size
        else:
            # Positioned at the checkpoint's end: an exact finding inside the range (a moved
            # subject, a gap) names its sequence and sorts first.
            self._error(
                size,
                f"{label} (size {size}): root does not match the log; "
                f"the log differs from the signed one at some sequence in "
                f"{self._last_ok_size + 1}..{size}",
            )
        self._next_target += 1

    def _subject(self, seq: int, problem: str) -> None:
        self._subject_errors += 1
        if self._subject_errors <= MAX_SUBJECT_ERRORS:
            self._error(seq, f"seq {seq}: {problem}")

    def feed(self, entries: Iterable[tuple[int, str, bytes]]) -> None:
        """Hash the next entries; call as often as needed, in stream order."""
        if self._broken_at is not None:
            return
        sha = hashlib.sha256
        check = subject_problem
        stack = self._stack
        n = self._n
        targets = self._targets
        target = targets[self._next_target] if self._next_target < len(targets) else -1
        try:
            for seq, subject, data in entries:
                if seq != n + 1:
                    what = "a gap" if seq > n + 1 else "out of order or repeated"
                    self._error(n + 1, f"sequence {what}: expected seq {n + 1}, found seq {seq}")
                    self._broken_at = n + 1
                    break
                problem = check(subject, data)
                if problem is not None:
                    self._subject(seq, problem)
                # Leaf format v2 (merkle.leaf_input), inlined: this loop runs a million times.
                h = sha(b"\x00" + subject.encode() + b"\n" + data).digest()
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
        if self._subject_errors > MAX_SUBJECT_ERRORS:
            hidden = self._subject_errors - MAX_SUBJECT_ERRORS
            r.warnings.append(f"{hidden} more events not what their subject says (not listed)")
        for size in self._targets[self._next_target :]:
            name = f"{self._by_size[size][0]} (size {size})"
            if self._broken_at is not None:
                self._error(
                    self._broken_at,
                    f"{name} not checked: the log is broken at seq {self._broken_at}",
                )
            else:
                self._error(
                    self._n + 1,
                    f"{name} covers {size} events but the log has {self._n}: "
                    f"seq {self._n + 1}..{size} are missing (truncated or rolled back)",
                )
        covered = max(self._by_size, default=0)
        own = max(self._own_sizes, default=0)
        r.anchored = min(covered, self._n)
        if self._broken_at is None:
            if not self._own_sizes and self._n:
                self._error(
                    self._n + 1,
                    f"no checkpoint signed by {key} in the log: all {self._n} events unanchored "
                    "by it (were the checkpoints deleted?)",
                )
            elif self._n > covered:
                r.warnings.append(
                    f"{self._n - covered} events after the last checkpoint "
                    f"(seq {covered + 1}..{self._n}) are unanchored"
                )
            if self._own_sizes and covered > own:
                r.warnings.append(
                    f"the log's own checkpoints end at size {own}, but a trusted checkpoint "
                    f"has size {covered}: later checkpoints are missing from the log"
                )
        return r


def iter_export(path: Path) -> Iterator[tuple[int, str, bytes]]:
    """(seq, subject, payload) from an events.jsonl; a bad line is an ExportFormatError."""
    loads = json.loads
    a2b = binascii.a2b_base64
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                obj = loads(line)
                subject = obj["subject"]
                if type(subject) is not str:
                    raise TypeError("subject is not a string")
                yield obj["seq"], subject, a2b(obj["data"], strict_mode=True)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise ExportFormatError(f"{path.name} line {lineno}: {exc}") from exc


def verify_export(
    directory: Path,
    verifier: Verifier,
    *,
    origin: str | None = None,
    trusted: Sequence[Named] = (),
) -> VerifyResult:
    """Verify an `audit export` directory (leaf format v2 only) against the trusted key."""
    events = directory / EVENTS_FILE
    if not events.is_file():
        raise ExportFormatError(f"{events} does not exist; is {directory} an export?")
    try:
        check_manifest(directory)
    except ValueError as exc:
        raise ExportFormatError(str(exc)) from None
    cps = directory / CHECKPOINTS_FILE
    notes = split_notes(cps.read_text(encoding="utf-8")) if cps.is_file() else []
    lv = LogVerifier(notes, verifier, origin=origin, trusted=trusted)
    try:
        lv.feed(iter_export(events))
    except ExportFormatError as exc:
        lv.fail(lv.events_seen + 1, str(exc))
    return lv.finish()
