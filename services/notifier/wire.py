"""An email as the bytes SMTP carries (pure): what aiosmtplib's `send_message` would send, at a
fraction of the cost.

`send_message` copies the message and runs the stdlib's BytesGenerator over it, which writes
the body a line at a time through several layers, and (for a multipart without a boundary)
makes a random boundary, compiles a regex to check it and re-parses the Content-Type to set
it. In a burst that was about a fifth of the notifier's CPU. `wire_bytes` writes the same
bytes directly for the shapes message.py builds - text parts, alone or in a multipart whose
boundary is set - and gives up (None) on anything else, which is then sent the stdlib way.
Headers are folded by the policy exactly as the generator folds them (message.py caches the
folding of the headers every email shares). tests/unit/test_wire.py holds the two byte for
byte equal.
"""

from __future__ import annotations

import re
from email import policy as email_policy
from email.message import Message

# What aiosmtplib flattens with when the server takes 8BITMIME and every address is ASCII
# (the only case `wire_bytes` is used for): the SMTP policy, CRLF line ends.
POLICY = email_policy.SMTP
_NL = "\r\n"
_NLCRE = re.compile(r"\r\n|\r|\n")  # the generator's line-end pattern
# Multipart subtypes the generator writes with its generic multipart handler (signed and
# other special cases are left to it).
_PLAIN_MULTIPARTS = frozenset({"alternative", "mixed", "related"})


class _Unsupported(Exception):
    """A message shape `wire_bytes` does not write; the caller falls back."""


def wire_bytes(message: Message) -> bytes | None:
    """The message as `aiosmtplib.email.flatten_message(message)` writes it (SMTP policy,
    8-bit bodies as they are), or None for a shape it does not handle (Bcc headers, a
    multipart without a boundary, preamble or epilogue, non-text leaves)."""
    if "Bcc" in message or "Resent-Bcc" in message:
        return None  # flatten_message drops these: leave that to it
    out: list[bytes] = []
    try:
        _write(message, out)
    except (_Unsupported, UnicodeEncodeError):
        return None
    return b"".join(out)


def _write(msg: Message, out: list[bytes]) -> None:
    """Headers, blank line, body - Generator._write with the policy's folding."""
    main = msg.get_content_maintype()
    body: list[bytes] = []
    if main == "multipart":
        _multipart(msg, body)
    elif main == "text":
        _text(msg, body)
    else:
        raise _Unsupported(main)
    for name, value in msg.raw_items():
        out.append(POLICY.fold_binary(name, value))
    out.append(b"\r\n")
    out.extend(body)


def _text(msg: Message, out: list[bytes]) -> None:
    """BytesGenerator._handle_text: the payload with CRLF line ends. An 8-bit body (held as
    surrogate escapes) is written back as its bytes."""
    payload = msg._payload  # type: ignore[attr-defined]  # what the generator reads too
    if payload is None:
        return
    if not isinstance(payload, str):
        raise _Unsupported("payload")
    # Generator._write_lines: each line, ended by CRLF but for a last one without an end.
    out.append(_NLCRE.sub(_NL, payload).encode("ascii", "surrogateescape"))


def _multipart(msg: Message, out: list[bytes]) -> None:
    """Generator._handle_multipart with the boundary the message already has."""
    if msg.get_content_subtype() not in _PLAIN_MULTIPARTS:
        raise _Unsupported("subtype")
    boundary = msg.get_boundary()
    subparts = msg.get_payload()
    if not boundary or msg.preamble is not None or msg.epilogue is not None:
        raise _Unsupported("boundary")
    if not isinstance(subparts, list) or not subparts:
        raise _Unsupported("parts")
    delimiter = ("--" + boundary).encode("ascii")
    for i, part in enumerate(subparts):
        out.append(delimiter + b"\r\n" if i == 0 else b"\r\n" + delimiter + b"\r\n")
        if not isinstance(part, Message):
            raise _Unsupported("part")
        _write(part, out)
    out.append(b"\r\n" + delimiter + b"--\r\n")


__all__ = ["POLICY", "wire_bytes"]
