"""Checkpoints an auditor kept outside the system, for `audit verify --trusted FILE`.

A file is either signed notes as the ledger writes them (one, or several separated by a blank
line) or an e-mail a witness received and saved (`.eml`): its text/plain part is the signed
note (see witness.py). Mail may turn newlines into CRLF and add a trailing line; both are
undone here. Nothing is trusted for being here: every note must still verify with the key.
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from services.audit.note import NoteError, split_notes

_HEADER = re.compile(rb"^[A-Za-z0-9-]+:[ \t]")


def looks_like_email(raw: bytes) -> bool:
    """Whether `raw` starts with a mail header line (a note starts with its origin)."""
    return bool(_HEADER.match(raw))


def notes_in_email(raw: bytes) -> list[str]:
    """The signed notes in a saved e-mail's text/plain parts."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)  # policy.default builds EmailMessage
    notes: list[str] = []
    for part in msg.walk():
        if part.get_content_type() != "text/plain" or part.is_attachment():
            continue
        text = str(part.get_content()).replace("\r\n", "\n").strip("\n")
        notes.extend(split_notes(text + "\n"))
    if not notes:
        raise NoteError("the e-mail has no text/plain part with a signed note")
    return notes


def load_trusted(path: Path) -> list[tuple[str, str]]:
    """(label, note) for every note in the file; the label names the file for findings."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".eml" or looks_like_email(raw):
        notes = notes_in_email(raw)
    else:
        notes = split_notes(raw.decode("utf-8").replace("\r\n", "\n"))
    if not notes:
        raise NoteError(f"{path} holds no signed note")
    if len(notes) == 1:
        return [(path.name, notes[0])]
    return [(f"{path.name}[{i}]", n) for i, n in enumerate(notes, 1)]
