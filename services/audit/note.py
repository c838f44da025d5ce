"""C2SP signed notes and tlog checkpoints with Ed25519 (pure).

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines `— <key name> <base64(key_id[4] ‖ signature[64])>`. The signature covers the text with
its final newline. `key_id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public_key)[:4]` (0x01 = Ed25519).

A checkpoint (C2SP tlog-checkpoint) is a note whose text is
`<origin>\\n<tree size>\\n<base64 root>\\n` (optionally followed by extension lines).

Key formats (the same as golang.org/x/mod/sumdb/note, so Go tools read our keys):

- verifier key, shared freely: `<name>+<8 hex key_id>+<base64(0x01 ‖ public_key[32])>`
- signing key, the file named by `DOORALERT_LOG_KEY_FILE` (mode 0600):
  `PRIVATE+KEY+<name>+<8 hex key_id>+<base64(0x01 ‖ ed25519_seed[32])>` on one line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash and a space
_PRIVATE_PREFIX = "PRIVATE+KEY+"


class NoteError(ValueError):
    """A key, note or checkpoint that is malformed or whose signature does not verify."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id that prefixes every signature by this key."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The key's 4-byte id, as signed notes name it."""
        return key_id(self.name, self.public_key)

    @property
    def line(self) -> str:
        """The verifier key line to publish: `<name>+<hex id>+<base64(0x01 ‖ key)>`."""
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, line: str) -> Verifier:
        """A verifier from its `<name>+<key id>+<base64 key>` line."""
        parts = line.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("verifier key must look like <name>+<8 hex key id>+<base64 key>")
        name, hex_id, blob = parts
        _check_name(name)
        raw = _b64decode(blob, "verifier key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key (0x01 ‖ 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise NoteError(f"verifier key id {hex_id} does not match its name and key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` is this key's over `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random signing key for `name`."""
        _check_name(name)
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def verifier(self) -> Verifier:
        """The public half, as others check it."""
        return Verifier(self.name, _raw_public(self.private_key.public_key()))

    @property
    def key_id(self) -> bytes:
        """The key's 4-byte id."""
        return self.verifier.key_id

    def dumps(self) -> str:
        """The signing-key file content (one line, Go sumdb `PRIVATE+KEY+…` form)."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        blob = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{blob}\n"

    @classmethod
    def parse(cls, text: str) -> Signer:
        """A signer from its private key line."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise NoteError("signing key must start with PRIVATE+KEY+")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise NoteError("signing key must look like PRIVATE+KEY+<name>+<hex id>+<base64>")
        name, hex_id, blob = parts
        _check_name(name)
        raw = _b64decode(blob, "signing key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("signing key is not an Ed25519 seed (0x01 ‖ 32 bytes)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hex_id.lower():
            raise NoteError(f"signing key id {hex_id} does not match its name and key")
        return signer

    def sign(self, text: str) -> str:
        """The signed note: `text`, a blank line, and this key's signature line."""
        if not text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        sig = self.private_key.sign(text.encode())
        return f"{text}\n{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + sig).decode()}\n"


def write_signing_key(path: Path, signer: Signer, *, overwrite: bool = False) -> None:
    """Write the key file with mode 0600, refusing to replace an existing one by default."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.dumps())
    os.chmod(path, 0o600)


def read_signing_key(path: Path) -> Signer:
    """The signing key written by `write_signing_key`."""
    mode = path.stat().st_mode & 0o077
    if mode:
        raise NoteError(f"{path} is readable by group or others (mode {oct(mode)}); chmod 600 it")
    return Signer.parse(path.read_text())


def load_verifier(key_or_file: str) -> Verifier:
    """A verifier from a key line, a file holding one, or a signing-key file."""
    path = Path(key_or_file)
    text = path.read_text().strip() if path.is_file() else key_or_file.strip()
    if text.startswith(_PRIVATE_PREFIX):
        return Signer.parse(text).verifier
    return Verifier.parse(text.splitlines()[0] if text else text)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]


def parse_note(note: str) -> Note:
    """Split a signed note into its text and signature lines (no verification)."""
    if not note.endswith("\n"):
        raise NoteError("signed note must end with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("signed note has no blank line before its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    sigs = []
    for line in sig_block.splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line {line[:60]!r}")
        try:
            name, blob = line[len(SIG_PREFIX) :].split(" ")
        except ValueError:
            raise NoteError(f"malformed signature line {line[:60]!r}") from None
        raw = _b64decode(blob, "signature")
        if len(raw) < 5:
            raise NoteError("signature too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("signed note has no signatures")
    return Note(text, tuple(sigs))


def open_note(note: str, verifier: Verifier) -> str:
    """The note's text if it carries a valid signature by `verifier`; NoteError otherwise.

    Signatures by other keys are ignored (a witness may cosign); a signature that claims to
    be by the trusted key but does not verify is an error.
    """
    parsed = parse_note(note)
    ours = [s for s in parsed.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not ours:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in parsed.signatures)
        raise NoteError(
            f"not signed by {verifier.name}+{verifier.key_id.hex()} (signed by {names})"
        )
    for sig in ours:
        if not verifier.verify(parsed.text.encode(), sig.signature):
            raise NoteError(f"signature by {verifier.name}+{verifier.key_id.hex()} is not valid")
    return parsed.text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint text that is signed."""
        root = base64.b64encode(self.root).decode()
        return "\n".join([self.origin, str(self.size), root, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from a note's text (`NoteError` if it is not one)."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint must have origin, size and root lines, each ending in \\n")
        origin, size_s, root_s, *ext = lines[:-1]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
            raise NoteError(f"checkpoint size {size_s!r} is not a decimal number")
        root = _b64decode(root_s, "checkpoint root")
        if len(root) != 32:
            raise NoteError("checkpoint root is not 32 bytes")
        return cls(origin, int(size_s), root, tuple(ext))


def sign_checkpoint(signer: Signer, checkpoint: Checkpoint) -> str:
    """The signed note of `checkpoint`."""
    return signer.sign(checkpoint.body())


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint in a signed note, if the trusted key signed it."""
    return Checkpoint.parse(open_note(note, verifier))


def split_notes(text: str) -> list[str]:
    """Notes concatenated with one blank line between them (checkpoints.txt), in order.

    A note's own blank line separates its text from its signature lines; the blank line after
    its signature lines ends it.
    """
    notes: list[str] = []
    current: list[str] = []
    in_sigs = False
    for line in text.split("\n"):
        if not in_sigs:
            if line == "" and not current:
                continue
            current.append(line)
            in_sigs = line == ""
        elif line == "":
            notes.append("\n".join(current) + "\n")
            current, in_sigs = [], False
        else:
            current.append(line)
    if current:
        notes.append("\n".join(current) + "\n")
    return notes


def join_notes(notes: list[str]) -> str:
    """Notes as one text, separated by one blank line (`split_notes` reads it back)."""
    return "\n".join(notes)
