"""nats-py's header parsing, the same answers with less work per message.

nats-py 2.16 parses every message's header block in `Client._parse_header_lines`, and for
each header name tests `any(c.isspace() for c in key)`: a generator step per character, about
a hundred per email in the notifier (direct-get replies and delivered events each carry four
to six headers). Here that test is one precompiled search (`\\s` matches exactly the
characters `str.isspace` accepts); everything else is nats-py's own algorithm.

`install()` replaces the static method only when nats-py's own gives this module's answers on
a sample, so a nats-py that changed what it does keeps its own (tests/unit/test_natsheaders.py
compares the two on generated header blocks).
"""

from __future__ import annotations

import re

from nats.aio.client import Client

_CRLF = b"\r\n"
_SPACE = re.compile(r"\s")
_SAMPLE = (
    b"NATS/1.0\r\nNats-Stream: DOORALERT\r\nNats-Sequence:12\r\nBad Name: x\r\n"
    b":empty\r\nNo-Colon\r\n\xff\xfe: x\r\nNats-Msg-Id:\tabc \r\nU: caf\xc3\xa9\xff\r\n\r\n"
)


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """`Client._parse_header_lines` of nats-py 2.16, same results."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _SPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def install() -> bool:
    """Use `parse_header_lines` in nats-py's client if its own agrees on the sample."""
    original = getattr(Client, "_parse_header_lines", None)
    if original is None or original is parse_header_lines:
        return original is parse_header_lines
    try:
        same = bool(original(_SAMPLE) == parse_header_lines(_SAMPLE))
    except Exception:  # noqa: BLE001 - a nats-py that works differently keeps its own
        return False
    if same:
        Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
    return same
