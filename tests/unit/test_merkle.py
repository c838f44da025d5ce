"""RFC 6962 tree hashing: the published vectors, and the incremental tree against the definition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.merkle import EMPTY_ROOT, CompactRange, MerkleError, reference_root, root_of

# A copy of ../shared/reference/rfc6962-vectors.json, committed so the test never skips.
VECTORS = json.loads(
    (
        Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "rfc6962-vectors.json"
    ).read_text()
)

LEAVES = [bytes.fromhex(h) for h in (VECTORS or {}).get("leaf_inputs_hex", [])]


@pytest.mark.parametrize("size", range(9))
def test_root_at_every_size_matches_the_rfc6962_vectors(size: int) -> None:
    assert VECTORS is not None
    want = VECTORS["root_hashes_by_size_hex"][size]
    tree = CompactRange()
    tree.extend(LEAVES[:size])
    assert tree.root().hex() == want
    assert reference_root(LEAVES[:size]).hex() == want


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert CompactRange().root() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=70))
def test_incremental_root_equals_the_recursive_definition_at_each_size(leaves: list[bytes]) -> None:
    tree = CompactRange()
    for i, leaf in enumerate(leaves):
        tree.append(leaf)
        assert tree.size == i + 1
    assert tree.root() == reference_root(leaves)


def test_compact_range_holds_one_hash_per_set_bit_of_the_size() -> None:
    tree = CompactRange()
    for i in range(1, 300):
        tree.append(i.to_bytes(2, "big"))
        assert len(tree.hashes) == i.bit_count()


def test_state_round_trips_through_one_line_and_keeps_growing_identically() -> None:
    leaves = [bytes([i]) * i for i in range(100)]
    tree = CompactRange()
    tree.extend(leaves[:37])
    resumed = CompactRange.loads(tree.dumps())
    assert "\n" not in tree.dumps()
    assert resumed.size == 37 and resumed.root() == tree.root()
    resumed.extend(leaves[37:])
    assert resumed.root() == root_of(leaves)


@pytest.mark.parametrize(
    "state",
    ["", "x", "3 AAAA", "2 " + "A" * 44 + " " + "A" * 44, "1 not-base64!"],
)
def test_a_malformed_state_is_refused(state: str) -> None:
    with pytest.raises(MerkleError):
        CompactRange.loads(state)


def test_changing_any_leaf_changes_the_root() -> None:
    leaves = [f"event {i}".encode() for i in range(20)]
    root = root_of(leaves)
    for i in range(20):
        tampered = list(leaves)
        tampered[i] = tampered[i] + b" "
        assert root_of(tampered) != root


# --- leaf format v2 (DESIGN §6): UTF-8 subject ‖ 0x0A ‖ payload -----------------------------

V2_SUBJECT = "dooralert.hamline.inc-1.incident.acknowledged"


def test_a_v2_leaf_hashes_the_subject_a_newline_and_the_payload() -> None:
    import hashlib

    from services.audit.merkle import leaf_hash, leaf_input

    payload = b'{"type":"incident.acknowledged"}'
    by_hand = hashlib.sha256(b"\x00" + V2_SUBJECT.encode("utf-8") + b"\x0a" + payload).digest()
    assert leaf_hash(leaf_input(V2_SUBJECT, payload)) == by_hand
    # a non-ASCII subject is hashed as its UTF-8 bytes
    assert leaf_input("dooralert.escuela-ñ.i.t", b"") == "dooralert.escuela-ñ.i.t\n".encode()


@pytest.mark.parametrize("size", range(1, 9))
def test_v2_roots_over_the_rfc6962_vectors_differ_from_v1_and_follow_the_definition(
    size: int,
) -> None:
    from services.audit.merkle import leaf_input

    inputs = [leaf_input(f"{V2_SUBJECT}.{i}", p) for i, p in enumerate(LEAVES[:size])]
    tree = CompactRange()
    tree.extend(inputs)
    assert tree.root() == reference_root(inputs)
    assert tree.root().hex() != VECTORS["root_hashes_by_size_hex"][size]
