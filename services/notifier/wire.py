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

Cheaper still: message.py writes an email's bytes as it builds it (a `BuiltEmail`, whose bytes
`wire_bytes` returns while the message is unchanged), its bodies encoded by `encode_text` as
set_content encodes them (tests/unit/test_wire_build.py).

Fewer lines (issue 13): an SMTP server reads DATA a line at a time (a few microseconds of its
CPU per line), so for a server that takes 8-bit bodies (8BITMIME: the only one `wire_bytes`'s
bytes go to) a text part is sent as its own lines, up to 998 octets each (RFC 5322 2.1.1):
7bit when ASCII, 8bit (UTF-8) when not, quoted-printable only for a part with a longer line
(`encode_text(..., longest=LONGEST_8BIT)`). A server without 8BITMIME gets the email as it was
built before, quoted-printable at 76 characters: `for_7bit_server`.
"""

from __future__ import annotations

import binascii
import operator
import re
from collections.abc import Callable, Iterable
from email import policy as email_policy
from email.message import EmailMessage, Message
from typing import Any

# What aiosmtplib flattens with when the server takes 8BITMIME and every address is ASCII
# (the only case `wire_bytes` is used for): the SMTP policy, CRLF line ends.
POLICY = email_policy.SMTP
# The longest line of both the SMTP policy (headers longer are folded) and policy.default,
# which message.py builds with (set_content encodes a body with a longer line).
MAX_LINE = 78
# The longest line of a 7bit or 8bit body (RFC 5322 2.1.1, RFC 2045 2.7-2.8: 998 octets before
# the CRLF), which a server with 8BITMIME takes as it is.
LONGEST_8BIT = 998
_NL = "\r\n"
_NLCRE = re.compile(r"\r\n|\r|\n")  # the generator's line-end pattern
# Multipart subtypes the generator writes with its generic multipart handler (signed and
# other special cases are left to it).
_PLAIN_MULTIPARTS = frozenset({"alternative", "mixed", "related"})


class _Unsupported(Exception):
    """A message shape `wire_bytes` does not write; the caller falls back."""


class BuiltEmail(EmailMessage):
    """An EmailMessage made together with its bytes (message.py writes both at once, which
    costs a fraction of writing them from the message): `wire_bytes` returns the bytes while
    the message holds exactly the headers and parts it was made with, and writes it afresh
    once anything in it was changed."""

    _built: tuple[bytes, _Shape] | None = None
    # Makes this email as it goes to a server without 8BITMIME (see `for_7bit_server`), and
    # the message as it was when that was recorded.
    _for_7bit: tuple[Callable[[], Message], _Shape] | None = None

    def keep_bytes(self, raw: bytes) -> None:
        """Record `raw` as this message's bytes, as it is now."""
        self._built = (raw, _shape(self))

    def kept_bytes(self) -> bytes | None:
        """The recorded bytes, or None if there are none or the message changed since."""
        if self._built is None:
            return None
        raw, shape = self._built
        return raw if _same(_shape(self), shape) else None

    def keep_7bit_form(self, make: Callable[[], Message]) -> None:
        """Record how to make this email for a server without 8BITMIME (its text parts
        quoted-printable where their lines are long, as they were built before)."""
        self._for_7bit = (make, _shape(self))


def for_7bit_server(message: Message) -> Message:
    """The message to send to a server without 8BITMIME: a BuiltEmail made again the way it
    was made before long lines went as they are (quoted-printable at 76 characters, the same
    text); anything else, or a BuiltEmail changed since it was built, as it is (the generator
    writes an 8-bit part as base64 for such a server)."""
    if isinstance(message, BuiltEmail) and message._for_7bit is not None:
        make, shape = message._for_7bit
        if _same(_shape(message), shape):
            return make()
    return message


# A message's headers and payload, and its parts' (one level: what message.py builds), as
# the objects they are: a header set, replaced or deleted, a payload set or a part added
# makes a new object.
_Shape = tuple[tuple[Any, ...], ...]


def _shape(msg: Message) -> _Shape:
    payload = msg._payload  # type: ignore[attr-defined]
    out: list[tuple[Any, ...]] = [(*msg._headers, payload, msg.preamble, msg.epilogue)]  # type: ignore[attr-defined]
    if isinstance(payload, list):
        out.append(tuple(payload))
        for part in payload:
            out.append((*part._headers, part._payload, part.preamble, part.epilogue))
    return tuple(out)


def _same(a: _Shape, b: _Shape) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(map(operator.is_, x, y)) for x, y in zip(a, b, strict=True)
    )


def header_bytes(name: str, value: Any) -> bytes:
    """One header as the generator writes it under the SMTP policy: a plain str the way
    message.py stores one (ASCII, printable, fits on a line) as it is, a plain Subject folded
    by `fold_plain`, anything else folded by its header object (message.py's policy caches
    that)."""
    if type(value) is str:
        if len(name) + len(value) + 2 <= MAX_LINE and value.isascii() and value.isprintable():
            return f"{name}: {value}\r\n".encode("ascii")
        if name == "Subject" and is_plain(value):
            folded = fold_plain(name, value)
            if folded is not None:
                return folded
    return POLICY.fold_binary(name, value)


# The longest word `fold_plain` folds (a longer one the stdlib may write as encoded words).
_FOLD_WORD_MAX = 60


def is_plain(value: str) -> bool:
    """Text the stdlib parses to words and single spaces and writes unchanged: ASCII,
    printable, no encoded word, no space at either end or two together (a `header_safe`
    subject)."""
    return (
        value.isascii()
        and value.isprintable()
        and "=?" not in value
        and "  " not in value
        and value == value.strip(" ")
    )


def fold_plain(name: str, value: str) -> bytes | None:
    """An unstructured header (Subject) of plain text (`is_plain`) as the SMTP policy folds
    it (_header_value_parser._refold_parse_tree), without parsing it: on one line if it fits,
    else on a line of its own if it fits there, else words on a line while they fit in
    MAX_LINE, the space before a word that does not fit starting the next line.
    None where that is not all the stdlib does (a word too long)."""
    words = value.split(" ")
    if not value or max(map(len, words)) > _FOLD_WORD_MAX:
        return None
    if len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}\r\n".encode("ascii")
    if len(value) + 1 <= MAX_LINE:
        # The whole text fits on a line of its own: it starts the next line.
        return f"{name}:\r\n {value}\r\n".encode("ascii")
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= MAX_LINE:
            lines[-1] += " " + word
        else:
            lines.append(" " + word)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def body_bytes(payload: str) -> bytes:
    """A text part's payload as encode_text makes it (LF line ends), as the generator writes
    it: CRLF line ends, an 8-bit body as its bytes."""
    return payload.replace("\n", _NL).encode("ascii", "surrogateescape")


def wire_bytes(message: Message) -> bytes | None:
    """The message as `aiosmtplib.email.flatten_message(message)` writes it (SMTP policy,
    8-bit bodies as they are), or None for a shape it does not handle (Bcc headers, a
    multipart without a boundary, preamble or epilogue, non-text leaves)."""
    if isinstance(message, BuiltEmail):
        raw = message.kept_bytes()
        if raw is not None:
            return raw
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
    # (The bodies encode_text makes end lines with LF only: a plain replace does.)
    crlf = payload.replace("\n", _NL) if "\r" not in payload else _NLCRE.sub(_NL, payload)
    out.append(crlf.encode("ascii", "surrogateescape"))


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


# --- a text body as set_content encodes it, without the email package's slow paths -------

# quoprimime's body map: printable ASCII but "=", and tab, stay; CR and LF are line ends.
# ("=" is quoted first, by a replace.)
_QP_UNSAFE = re.compile("[^\t\n\r -~]")
_QP_QUOTED = {chr(c): f"={c:02X}" for c in range(256)}
# A line's length in bytes and its quoted-printable form (soft line breaks included).
EncodedLine = tuple[int, str]


class KnownLines:
    """Lines that recur in many bodies (the lines a template gives every email of an alert):
    each encoded once, when it first comes up. Only these lines are kept, nothing else a
    body holds."""

    __slots__ = ("_encoded", "_lines")

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self._lines = frozenset(lines)
        self._encoded: dict[str, EncodedLine] = {}

    def encode(self, line: str) -> EncodedLine:
        encoded = self._encoded.get(line)
        if encoded is None:
            encoded = encode_line(line)
            if line in self._lines:
                self._encoded[line] = encoded
        return encoded


NO_LINES = KnownLines()


def _qp_quote(match: re.Match[str]) -> str:
    return _QP_QUOTED[match.group()]


def encode_text(
    text: str, known: KnownLines = NO_LINES, *, longest: int = MAX_LINE
) -> tuple[str, str] | None:
    """(Content-Transfer-Encoding, payload) as `set_content(text)` on a policy.default message
    picks and encodes them (email.contentmanager._encode_text, utf-8): 7bit or 8bit (held as
    surrogate escapes) when every line fits in MAX_LINE bytes, else quoted-printable, line
    ends LF. None when it would pick base64 (text that is mostly not ASCII): the caller
    leaves that to set_content. `known`: lines that recur, encoded once.
    `longest=LONGEST_8BIT` (for a server with 8BITMIME): 7bit or 8bit while every line fits
    in 998 octets, as set_content picks under a policy with that max_line_length; a text with
    a longer line is encoded as above (quoted-printable at 76 characters, or None).
    tests/unit/test_wire_build.py holds these equal."""
    if longest > MAX_LINE:
        wide = _encode_wide(text, longest)
        if wide is not None:
            return wide
    if "\r" in text:
        return _encode_bytes(text.encode("utf-8").splitlines())
    lines = text.split("\n")  # bytes.splitlines of the UTF-8: the same lines, without CR
    if lines[-1] == "":
        lines.pop()
    encoded = [known.encode(line) for line in lines]
    if max([e[0] for e in encoded], default=0) <= MAX_LINE:
        body = "\n".join(lines) + "\n"
        if body.isascii():
            return "7bit", body
        return "8bit", body.encode("utf-8").decode("ascii", "surrogateescape")
    # The stdlib sniffs the first ten lines to choose between quoted-printable and base64:
    # their quoted-printable form and their base64, by length.
    sniff_qp = sum(len(e[1]) for e in encoded[:10]) + min(len(lines), 10)
    sniff = sum(e[0] for e in encoded[:10]) + min(len(lines), 10)
    if sniff_qp > 4 * ((sniff + 2) // 3) + 1:  # len(binascii.b2a_base64(sniff))
        return None
    return "quoted-printable", "\n".join([e[1] for e in encoded]) + "\n"


def _encode_wide(text: str, longest: int) -> tuple[str, str] | None:
    """7bit or 8bit if every line of `text` (as bytes.splitlines cuts the UTF-8) fits in
    `longest` octets, else None. Only lengths are looked at: nothing is quoted."""
    if "\r" in text:
        lines = text.encode("utf-8").splitlines()
        if max(map(len, lines), default=0) > longest:
            return None
        data = b"\n".join(lines) + b"\n"
        return ("7bit" if data.isascii() else "8bit"), data.decode("ascii", "surrogateescape")
    # Without CR, bytes.splitlines cuts at LF only: the body is the text, ended by LF.
    body = text if text.endswith("\n") else text + "\n"
    if body.isascii():
        return None if max(map(len, body.split("\n"))) > longest else ("7bit", body)
    data = body.encode("utf-8")
    if max(map(len, data.split(b"\n"))) > longest:
        return None
    return "8bit", data.decode("ascii", "surrogateescape")


def encode_line(line: str) -> EncodedLine:
    """One line (no line end) for encode_text: its size in UTF-8, its quoted-printable."""
    data = line.encode("utf-8")
    return len(data), _qp_line(
        _QP_UNSAFE.sub(_qp_quote, data.decode("latin-1").replace("=", "=3D"))
    )


def _encode_bytes(lines: list[bytes]) -> tuple[str, str] | None:
    """encode_text for the lines of a text that had CR line ends (as the stdlib does it)."""
    if max(map(len, lines), default=0) <= MAX_LINE:
        body = b"\n".join(lines) + b"\n"
        return ("7bit" if body.isascii() else "8bit"), body.decode("ascii", "surrogateescape")
    sniff = b"\n".join(lines[:10]) + b"\n"
    sniff_qp = quoted_printable(sniff)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        return None
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    return "quoted-printable", quoted_printable(b"\n".join(lines) + b"\n")


def quoted_printable(data: bytes) -> str:
    """`email.quoprimime.body_encode(data.decode("latin-1"), MAX_LINE)`: the same text, with
    its character-by-character translation replaced by one regex over the few characters
    that need quoting (tested equal)."""
    if not data:
        return ""
    body = _QP_UNSAFE.sub(_qp_quote, data.decode("latin-1").replace("=", "=3D"))
    # After the translation the only line ends left are CR and LF (quoprimime's splitlines).
    encoded = [_qp_line(line) for line in body.splitlines()]
    if body[-1] in "\r\n":
        encoded.append("")
    return "\n".join(encoded)


def _qp_line(line: str) -> str:
    """One translated line with soft line breaks: quoprimime.body_encode's loop, as it is."""
    n = len(line)
    if n <= MAX_LINE and line[-1:] not in (" ", "\t"):
        return line  # the common case: it fits and has no trailing whitespace
    maxlinelen1 = MAX_LINE - 1
    out: list[str] = []
    append = out.append
    start = 0
    laststart = n - 1 - MAX_LINE
    while start <= laststart:
        stop = start + maxlinelen1
        if line[stop - 2] == "=":
            append(line[start : stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            append(line[start:stop])
            start = stop - 1
        else:
            append(line[start:stop] + "=")
            start = stop
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            q = _QP_QUOTED[line[-1]]
        elif room == 2:
            q = line[-1] + "=\n"
        else:
            q = "=\n" + _QP_QUOTED[line[-1]]
        append(line[start:-1] + q)
    else:
        append(line[start:])
    return "\n".join(out)


__all__ = [
    "LONGEST_8BIT",
    "MAX_LINE",
    "POLICY",
    "BuiltEmail",
    "KnownLines",
    "body_bytes",
    "encode_line",
    "encode_text",
    "fold_plain",
    "for_7bit_server",
    "header_bytes",
    "is_plain",
    "quoted_printable",
    "wire_bytes",
]
