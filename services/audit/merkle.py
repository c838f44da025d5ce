"""RFC 6962 / RFC 9162 Merkle tree hashing, incremental (pure).

`leaf = SHA-256(0x00 ‖ bytes)`, `node = SHA-256(0x01 ‖ left ‖ right)`, and the empty tree's
root is `SHA-256("")`. A tree of size n is the left subtree over the largest power of two
below n, plus the right subtree over the rest.

`CompactRange` keeps only the roots of the perfect subtrees that make up [0, size): one per
set bit of `size`, largest (leftmost) first. Appending is O(1) amortised and O(log n) worst
case; the root at the current size is a fold over at most log2(n) hashes. Its state is small
(≤ 64 hashes) and serializes to one line, which is how the ledger resumes (see ledger.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


# The leaf format (DESIGN §6, v2): the leaf input is the UTF-8 subject, a newline, then the exact
# payload bytes, so an event cannot be moved to another subject without changing the tree.
# (v1 hashed the payload alone.) The export's manifest.json names it.
LEAF_FORMAT = "subject-lf-payload"
LEAF_VERSION = 2


def leaf_input(subject: str, payload: bytes) -> bytes:
    """The v2 leaf input of one log message: UTF-8 subject ‖ 0x0A ‖ payload."""
    return subject.encode() + b"\n" + payload


class MerkleError(ValueError):
    """A compact-range state that cannot be right (wrong number or size of hashes)."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def fold_root(stack: list[bytes]) -> bytes:
    """The tree root from the subtree roots of a compact range over [0, size)."""
    if not stack:
        return EMPTY_ROOT
    root = stack[-1]
    for h in reversed(stack[:-1]):
        root = node_hash(h, root)
    return root


class CompactRange:
    """The Merkle tree over [0, size), kept as its perfect-subtree roots."""

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, stack: Iterable[bytes] = ()) -> None:
        hashes = list(stack)
        if size < 0:
            raise MerkleError(f"tree size must be ≥ 0, got {size}")
        if len(hashes) != size.bit_count():
            raise MerkleError(
                f"a tree of size {size} has {size.bit_count()} subtree roots, got {len(hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise MerkleError("every subtree root must be 32 bytes")
        self.size = size
        self._stack = hashes

    def append(self, data: bytes) -> None:
        """Add one leaf: the exact bytes of the next log entry."""
        self.append_hash(_sha256(b"\x00" + data).digest())

    def append_hash(self, h: bytes) -> None:
        """Add one leaf by its leaf hash."""
        stack = self._stack
        n = self.size
        # Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self.size += 1

    def extend(self, items: Iterable[bytes]) -> None:
        """Add leaves, in order."""
        for data in items:
            self.append(data)

    def root(self) -> bytes:
        """The tree head over every leaf added so far."""
        return fold_root(self._stack)

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The subtree roots, largest first."""
        return tuple(self._stack)

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self.size, self._stack)

    def dumps(self) -> str:
        """One ASCII line: `<size>` then each subtree root in base64, space separated."""
        return " ".join([str(self.size), *(base64.b64encode(h).decode() for h in self._stack)])

    @classmethod
    def loads(cls, text: str) -> CompactRange:
        """Read what `dumps` wrote (`MerkleError` if it is malformed)."""
        parts = text.split()
        if not parts or not parts[0].isdigit():
            raise MerkleError("compact range must start with the tree size")
        try:
            hashes = [base64.b64decode(p, validate=True) for p in parts[1:]]
        except ValueError as exc:
            raise MerkleError(f"compact range hash is not base64: {exc}") from exc
        return cls(int(parts[0]), hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, root={self.root().hex()[:16]}…)"


def root_of(leaves: Iterable[bytes]) -> bytes:
    """The root of the tree over these leaf inputs (convenience for tests and tools)."""
    tree = CompactRange()
    tree.extend(leaves)
    return tree.root()


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH by its recursive definition: slow, the oracle for tests."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))
