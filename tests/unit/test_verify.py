"""Log verification and the checkpoint policy, pure: no NATS, synthetic logs."""

from __future__ import annotations

import pytest

from services.audit.ledger import checkpoint_due
from services.audit.merkle import root_of
from services.audit.note import Checkpoint, Signer, sign_checkpoint
from services.audit.verify import LogVerifier

ORIGIN = "dooralert.example/unit"
SIGNER = Signer.generate(ORIGIN)
LOG = [f'{{"n":{i}}}'.encode() for i in range(1, 41)]


def note(size: int, root: bytes | None = None, signer: Signer = SIGNER) -> str:
    return sign_checkpoint(signer, Checkpoint(ORIGIN, size, root or root_of(LOG[:size])))


def run(notes: list[str], entries: list[tuple[int, bytes]], **kw: str) -> LogVerifier:
    lv = LogVerifier(notes, SIGNER.verifier, **kw)
    # fed in two calls, as the online verifier does batch by batch
    lv.feed(entries[:13])
    lv.feed(entries[13:])
    return lv


def entries(log: list[bytes] = LOG) -> list[tuple[int, bytes]]:
    return list(enumerate(log, 1))


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
    tampered[20] = b"changed"
    result = run([note(10), note(30), note(40)], entries(tampered)).finish()
    text = result.render()
    assert text.splitlines()[-1] == (
        "FAILED: checkpoint #2 (size 30): root does not match the log; the log differs from "
        "the signed one at some sequence in 11..30"
    )


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
