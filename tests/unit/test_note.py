"""C2SP signed notes and checkpoints: the Go sumdb vector byte for byte; what must not verify."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from services.audit.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    join_notes,
    load_verifier,
    open_checkpoint,
    open_note,
    read_signing_key,
    sign_checkpoint,
    split_notes,
    write_signing_key,
)

# A copy of ../shared/reference/signed-note-vector.json, committed so the test never skips.
REFERENCE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "signed-note-vector.json"
)
needs_vector = pytest.mark.skipif(not REFERENCE.is_file(), reason="reference vector absent")


@pytest.fixture
def vector() -> dict[str, str]:
    return json.loads(REFERENCE.read_text())


@needs_vector
def test_signing_the_go_example_reproduces_it_byte_for_byte(vector: dict[str, str]) -> None:
    signer = Signer.parse(vector["signer_key"])
    assert signer.sign(vector["text"]) == vector["signed_note"]
    assert signer.verifier.line == vector["verifier_key"]
    assert signer.dumps() == vector["signer_key"] + "\n"


@needs_vector
def test_the_go_example_verifies_with_its_verifier_key(vector: dict[str, str]) -> None:
    verifier = Verifier.parse(vector["verifier_key"])
    assert verifier.key_id.hex() == "c74f20a3"
    assert open_note(vector["signed_note"], verifier) == vector["text"]


@needs_vector
def test_a_changed_text_does_not_verify(vector: dict[str, str]) -> None:
    verifier = Verifier.parse(vector["verifier_key"])
    with pytest.raises(NoteError, match="not valid"):
        open_note(vector["signed_note"].replace("cryptography", "Cryptography"), verifier)


def test_a_note_signed_by_another_key_is_refused_naming_the_signer() -> None:
    ours, theirs = Signer.generate("log.example/a"), Signer.generate("log.example/a")
    note = theirs.sign("hello\n")
    with pytest.raises(NoteError, match=r"not signed by log.example/a"):
        open_note(note, ours.verifier)


def test_a_cosignature_by_another_key_is_ignored() -> None:
    log_key, witness = Signer.generate("log.example/a"), Signer.generate("witness.example")
    note = log_key.sign("hello\n")
    cosigned = note + witness.sign("hello\n").split("\n\n", 1)[1]
    assert open_note(cosigned, log_key.verifier) == "hello\n"


@pytest.mark.parametrize(
    "line",
    [
        "nonsense",
        "name+c74f20a3",
        "name+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpjZHcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "a b+00+AA==",
    ],
)
def test_malformed_or_mismatched_verifier_keys_are_refused(line: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(line)


def test_checkpoint_body_is_origin_size_root_lines() -> None:
    cp = Checkpoint("dooralert.example/cps", 12, bytes(range(32)))
    assert cp.body() == "dooralert.example/cps\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    assert Checkpoint.parse(cp.body()) == cp


@pytest.mark.parametrize(
    "body",
    [
        "o\n1\n",
        "o\n-1\nAAAA\n",
        "o\n01\n" + "A" * 43 + "=\n",
        "\n1\n" + "A" * 43 + "=\n",
        "o\n1\nAAAA\n",
    ],
)
def test_malformed_checkpoints_are_refused(body: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(body)


def test_signed_checkpoint_round_trips() -> None:
    signer = Signer.generate("dooralert.example/cps")
    cp = Checkpoint("dooralert.example/cps", 7, b"\x07" * 32)
    note = sign_checkpoint(signer, cp)
    assert note.startswith(cp.body() + "\n\u2014 dooralert.example/cps ")
    assert open_checkpoint(note, signer.verifier) == cp


def test_notes_joined_by_one_blank_line_split_back_in_order() -> None:
    signer = Signer.generate("o")
    notes = [sign_checkpoint(signer, Checkpoint("o", n, bytes([n]) * 32)) for n in range(1, 5)]
    text = join_notes(notes)
    assert "\n\n\n" not in text
    assert split_notes(text) == notes
    assert split_notes(text + "\n\n") == notes


def test_key_file_is_private_and_reloads(tmp_path: Path) -> None:
    signer = Signer.generate("dooralert.example/cps")
    path = tmp_path / "log.key"
    write_signing_key(path, signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_signing_key(path).verifier == signer.verifier
    with pytest.raises(FileExistsError):
        write_signing_key(path, signer)
    path.chmod(0o644)
    with pytest.raises(NoteError, match="chmod 600"):
        read_signing_key(path)


def test_verifier_loads_from_a_line_or_a_file(tmp_path: Path) -> None:
    signer = Signer.generate("dooralert.example/cps")
    pub = tmp_path / "log-key.pub"
    pub.write_text(signer.verifier.line + "\n")
    assert load_verifier(signer.verifier.line) == signer.verifier
    assert load_verifier(str(pub)) == signer.verifier
