"""Log verification and the checkpoint policy, pure: no NATS, synthetic logs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.audit.ledger import checkpoint_due
from services.audit.merkle import leaf_input, root_of
from services.audit.note import Checkpoint, Signer, sign_checkpoint
from services.audit.verify import LogVerifier

ORIGIN = "dooralert.example/unit"
SIGNER = Signer.generate(ORIGIN)
Entry = tuple[str, bytes]  # (subject, payload)


def event(i: int, *, incident: str | None = None, kind: str = "encounter.updated") -> Entry:
    inc = incident or f"inc-{i % 7}"
    payload = {"id": f"e{i}", "type": kind, "school_id": "hamline", "incident_id": inc, "n": i}
    return f"dooralert.hamline.{inc}.{kind}", json.dumps(payload).encode()


LOG = [event(i) for i in range(1, 41)]


def root(log: list[Entry], size: int) -> bytes:
    return root_of(leaf_input(s, p) for s, p in log[:size])


def note(
    size: int, rt: bytes | None = None, signer: Signer = SIGNER, log: list[Entry] = LOG
) -> str:
    return sign_checkpoint(signer, Checkpoint(ORIGIN, size, rt or root(log, size)))


def run(notes: list[str], entries: list[tuple[int, str, bytes]], **kw: Any) -> LogVerifier:
    lv = LogVerifier(notes, SIGNER.verifier, **kw)
    # fed in two calls, as the online verifier does batch by batch
    lv.feed(entries[:13])
    lv.feed(entries[13:])
    return lv


def entries(log: list[Entry] = LOG) -> list[tuple[int, str, bytes]]:
    return [(seq, s, p) for seq, (s, p) in enumerate(log, 1)]


def test_an_intact_log_verifies_at_every_checkpoint() -> None:
    result = run([note(0), note(1), note(16), note(16), note(40)], entries()).finish()
    assert result.ok, result.render()
    assert (result.anchored, result.valid_checkpoints, result.warnings) == (40, 5, [])


def test_an_empty_log_without_checkpoints_is_fine() -> None:
    assert run([], []).finish().ok


def test_a_wrong_origin_is_refused_when_one_is_required() -> None:
    result = run([note(40)], entries(), origin="dooralert.example/other").finish()
    assert not result.ok and "expected 'dooralert.example/other'" in result.render()


def test_the_first_failure_is_the_earliest_in_the_log() -> None:
    tampered = list(LOG)
    tampered[20] = (LOG[20][0], LOG[20][1].replace(b'"n": 21', b'"n": 99'))
    result = run([note(10), note(30), note(40)], entries(tampered)).finish()
    text = result.render()
    assert text.splitlines()[-1] == (
        "FAILED: checkpoint #2 (size 30): root does not match the log; the log differs from "
        "the signed one at some sequence in 11..30"
    )


def test_an_event_moved_to_another_subject_fails_naming_its_sequence() -> None:
    moved = list(LOG)
    subject, payload = LOG[20]  # seq 21, of incident inc-0
    moved[20] = (subject.replace(".inc-0.", ".inc-5."), payload)
    result = run([note(10), note(30), note(40)], entries(moved)).finish()
    last = result.render().splitlines()[-1]
    assert last.startswith("FAILED: seq 21: subject dooralert.hamline.inc-5.encounter.updated")
    assert "of incident 'inc-0'" in last
    # and the signed roots no longer match either: the subject is part of the leaf
    assert "checkpoint #2 (size 30): root does not match" in result.render()


def test_the_leaf_binds_the_subject_even_when_the_payload_agrees_with_it() -> None:
    # A log signed with an event on one subject, later presented with it on another whose
    # payload was rewritten to match: only the v2 leaf (subject ‖ LF ‖ payload) notices.
    s, p = LOG[4]
    assert leaf_input(s, p) == s.encode() + b"\n" + p
    assert root(LOG, 5) != root_of(p for _, p in LOG[:5])  # not the v1 (payload-only) root


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"not json", "is not a JSON event"),
        (b"[1, 2]", "is not a JSON object"),
        (
            b'{"type": "encounter.updated", "school_id": "lincoln-park", "incident_id": "inc-1"}',
            "at 'lincoln-park'",
        ),
    ],
)
def test_a_payload_that_is_not_the_event_its_subject_names_is_an_error(
    payload: bytes, problem: str
) -> None:
    log = [*LOG[:3], ("dooralert.hamline.inc-1.encounter.updated", payload)]
    result = run([note(4, log=log)], entries(log)).finish()
    assert not result.ok and problem in result.render()
    assert result.render().splitlines()[-1].startswith("FAILED: seq 4: ")


def trusted(size: int, rt: bytes | None = None, log: list[Entry] = LOG) -> list[tuple[str, str]]:
    return [("witness.eml", note(size, rt, log=log))]


def test_a_log_that_extends_a_trusted_checkpoint_verifies() -> None:
    result = run([note(10), note(40)], entries(), trusted=trusted(25)).finish()
    assert result.ok and result.trusted == 1, result.render()


def test_a_log_rolled_back_before_a_trusted_checkpoint_fails() -> None:
    # the export was cut at 20 and the checkpoints after it dropped: alone it verifies…
    assert run([note(10), note(20)], entries(LOG[:20])).finish().ok
    result = run([note(10), note(20)], entries(LOG[:20]), trusted=trusted(30)).finish()
    last = result.render().splitlines()[-1]
    assert last == (
        "FAILED: trusted checkpoint witness.eml (size 30) covers 30 events but the log has 20: "
        "seq 21..30 are missing (truncated or rolled back)"
    )


def test_a_rewritten_log_re_signed_from_scratch_fails_against_a_trusted_checkpoint() -> None:
    # the checkpoints were deleted, the log rewritten and signed again by the same key
    other = [event(i, incident="inc-x") for i in range(1, 41)]
    alone = run([note(40, log=other)], entries(other)).finish()
    assert alone.ok, alone.render()
    result = run([note(40, log=other)], entries(other), trusted=trusted(25)).finish()
    assert "trusted checkpoint witness.eml (size 25): root does not match" in result.render()


def test_a_forked_checkpoint_of_the_trusted_size_is_a_fork() -> None:
    fork = run([note(10), note(40)], entries(), trusted=trusted(10, b"\x07" * 32)).finish()
    assert "fork at size 10: checkpoint #1 and trusted checkpoint witness.eml" in fork.render()


def test_a_trusted_checkpoint_signed_by_another_key_fails() -> None:
    bad = sign_checkpoint(Signer.generate(ORIGIN), Checkpoint(ORIGIN, 5, root(LOG, 5)))
    result = run([note(40)], entries(), trusted=[("kept.txt", bad)]).finish()
    assert "trusted checkpoint kept.txt (size 5): not signed by" in result.render()


def test_a_log_without_its_own_checkpoints_fails_even_with_a_trusted_one() -> None:
    result = run([], entries(), trusted=trusted(40)).finish()
    assert not result.ok and "were the checkpoints deleted?" in result.render()


def test_a_repeated_sequence_is_refused() -> None:
    rows = entries()
    rows.insert(5, rows[4])
    result = run([note(40)], rows).finish()
    assert "out of order or repeated: expected seq 6, found seq 5" in result.render()


@pytest.mark.parametrize(
    ("unanchored", "since", "due"),
    [(0, 999.0, False), (1, 0.0, False), (1, 10.0, True), (1000, 0.0, True), (999, 9.9, False)],
)
def test_a_checkpoint_is_due_after_n_events_or_t_seconds_but_never_for_nothing(
    unanchored: int, since: float, due: bool
) -> None:
    assert (
        checkpoint_due(unanchored=unanchored, seconds_since=since, every=1000, seconds=10.0) is due
    )
