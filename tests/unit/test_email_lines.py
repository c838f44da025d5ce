"""Fewer lines per alert email (issue 13): an SMTP server reads DATA a line at a time, so to a
server with 8BITMIME text parts go as their own lines (7bit, or 8bit UTF-8; quoted-printable
only for a part with a line over 998 octets) and the HTML templates' layout whitespace is
collapsed when they are compiled. A server without 8BITMIME gets quoted-printable as before."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.email import flatten_message
from jinja2 import DictLoader, Environment

from services.notifier import message as message_module
from services.notifier.htmlspace import LINE_BUDGET, CompactHtml
from services.notifier.smtp import SmtpPool, data_bytes
from services.notifier.wire import BuiltEmail, for_7bit_server, wire_bytes
from services.runtime.settings import Settings
from tests.support import TEST_SECRET, SmtpServer
from tests.unit.test_wire_build import (
    NOTES,
    assert_same,
    both,
    kind_request,
    set_content_email,
)


def lines(raw: bytes) -> int:
    return raw.count(b"\r\n")


def part(msg: Message, subtype: str) -> EmailMessage:
    assert isinstance(msg, EmailMessage)
    found = msg.get_body((subtype,))
    assert isinstance(found, EmailMessage)
    return found


def read_back(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_the_default_alert_email_is_about_half_the_lines_it_was() -> None:
    as_written = message_module.Templates(message_module.TEMPLATES, compact_html=False)
    for language in ("en", "es"):
        new, _ = both(language=language)
        raw = wire_bytes(new)
        assert raw is not None
        old, _ = both(language=language, templates=as_written, wide=False)
        before = wire_bytes(old)
        assert before is not None
        # 103 lines before (quoted-printable, a line per tag): now the text part's own 21
        # lines, the headers and a few lines of HTML.
        assert lines(before) >= 100
        assert lines(raw) <= 56, lines(raw)
        assert lines(raw) * 1.8 < lines(before)
        assert len(data_bytes(raw)) < len(data_bytes(before))
        assert part(new, "plain")["Content-Transfer-Encoding"] == "8bit"
        assert part(new, "html")["Content-Transfer-Encoding"] == "8bit"


def test_spanish_text_travels_as_utf8_in_8bit() -> None:
    new, _ = both(language="es", notes="Llegaron por la puerta del patio; niños adentro.")
    raw = wire_bytes(new)
    assert raw is not None
    for subtype in ("plain", "html"):
        assert part(new, subtype)["Content-Transfer-Encoding"] == "8bit"
    assert "CRÍTICO".encode() in raw and "niños adentro".encode() in raw
    assert "Dónde".encode() in raw  # the HTML table's label
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert b"=C3" not in body  # nothing quoted-printable
    back = read_back(raw)
    assert "niños adentro" in part(back, "plain").get_content()
    assert "Dónde" in part(back, "html").get_content()


def test_an_english_part_without_8bit_characters_is_7bit_with_long_lines() -> None:
    new, _ = both(notes="Plain ASCII notes.")
    raw = wire_bytes(new)
    assert raw is not None
    assert part(new, "plain")["Content-Transfer-Encoding"] == "7bit"
    assert part(new, "html")["Content-Transfer-Encoding"] == "8bit"  # the title's dash
    assert max(len(line) for line in raw.split(b"\r\n")) > 78  # lines as the text has them


def test_a_part_with_a_line_over_998_octets_falls_back_to_quoted_printable_unaltered() -> None:
    notes = "No line break in these notes. " * 40  # 1,200 characters on one line
    new, old = both(notes=notes)
    assert_same(new, old)  # what the email package makes
    raw = wire_bytes(new)
    assert raw is not None
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    back = read_back(raw)
    for subtype in ("plain", "html"):
        assert part(new, subtype)["Content-Transfer-Encoding"] == "quoted-printable"
        # Not folded or otherwise altered: the notes read back whole, on one line.
        assert notes.rstrip() in part(back, subtype).get_content()
    # Only the part with the long line: the other keeps its own lines.
    head = message_module._Head(
        "Subject", "a@x.example", "b@x.example", kind_request("alert"), "inc-1", "en"
    )
    email = message_module._email(head, text="short\n", html="<p>" + "x" * 1000 + "</p>\n")
    assert part(email, "plain")["Content-Transfer-Encoding"] == "7bit"
    assert part(email, "html")["Content-Transfer-Encoding"] == "quoted-printable"
    assert_same(email, set_content_email(head, text="short\n", html=email_html(email), wide=True))
    exactly = "y" * 998 + "\n"
    email = message_module._email(head, text=exactly, html=None)
    assert part_cte(email) == "7bit"
    email = message_module._email(head, text="y" + exactly, html=None)
    assert part_cte(email) == "quoted-printable"


def part_cte(msg: EmailMessage) -> str:
    return str(msg["Content-Transfer-Encoding"])


def email_html(msg: EmailMessage) -> str:
    return str(part(msg, "html").get_content())


def test_the_notes_keep_their_line_breaks_in_the_html() -> None:
    notes = "First line\n\n  indented after a blank line\n<b>last</b>  "
    for squeeze in (True, False):
        tpl = message_module.Templates(message_module.TEMPLATES, compact_html=squeeze)
        new, _ = both(notes=notes, templates=tpl)
        raw = wire_bytes(new)
        assert raw is not None
        html = part(read_back(raw), "html").get_content().replace("\r\n", "\n")
        expected = "First line\n\n  indented after a blank line\n&lt;b&gt;last&lt;/b&gt;  "
        assert f'<p style="white-space: pre-wrap">{expected}</p>' in html


def test_the_html_is_a_few_lines_of_under_998_octets() -> None:
    for language in ("en", "es"):
        for role in ("law", "family_liaison"):
            new, _ = both(language=language, role=role, notes="one line")
            html = email_html(new)
            assert html.count("\n") <= 10
            assert max(len(line.encode()) for line in html.split("\n")) < 600
            assert "\n\n" not in html and "  " not in html


def compact(source: str, name: str = "t.html", **values: object) -> str:
    env = Environment(
        loader=DictLoader({name: source}),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[CompactHtml],
    )
    return env.get_template(name).render(values)


def test_only_the_templates_own_whitespace_between_and_beside_tags_is_collapsed() -> None:
    source = (
        "<table>\n  <tr>\n    <td>{{ a }}</td>\n  </tr>\n</table>\n"
        "<p>\n  Some <b>bold</b>\n  <i>italic</i>   text\n  {{ b }}\n</p>\n"
    )
    got = compact(source, a="x\n\n y", b="keep\n  this")
    # Values are never touched; a break beside a block tag goes, one elsewhere is a space.
    assert got == (
        "<table><tr><td>x\n\n y</td></tr></table>"
        "<p>Some <b>bold</b> <i>italic</i>   text keep\n  this</p>"
    )
    # Text templates are left alone.
    plain = source.replace("{{ a }}", "1").replace("{{ b }}", "2").removesuffix("\n")
    assert compact(source, "t.txt", a="1", b="2") == plain


def test_preformatted_elements_and_attributes_keep_their_whitespace() -> None:
    source = (
        "<div>\n<pre>\n  a\n    b\n</pre>\n<textarea>\n x\n</textarea>\n"
        '<p style="white-space: pre-wrap">\n  {{ notes }}\n  <b>\n bold </b>\n</p>\n'
        '<a title="one\n  two" href="{{ url }}"\n   class="c">\n  link\n</a>\n</div>\n'
    )
    got = compact(source, notes="n\n  n", url="u")
    assert "<pre>\n  a\n    b\n</pre>" in got
    assert "<textarea>\n x\n</textarea>" in got
    assert '<p style="white-space: pre-wrap">\n  n\n  n\n  <b>\n bold </b>\n</p>' in got
    assert '<a title="one\n  two" href="u"\n   class="c"> link </a></div>' in got


def test_a_line_break_is_kept_where_a_line_grows_long_outside_conditionals() -> None:
    row = "<tr><td>{{ v }}</td></tr>\n"
    source = "<table>\n" + row * 40 + "{% if x %}\n" + row * 40 + "{% endif %}</table>\n"
    got = compact(source, v="v", x=True)
    first = got.split("<tr>", 41)
    assert all(len(line) < LINE_BUDGET + 100 for line in "<tr>".join(first[:41]).split("\n"))
    assert 1 < got.count("\n") < 40
    # Inside a statement whose content may not be output, none is kept.
    assert "\n" not in first[-1]


@pytest.fixture
def smtp_without_8bitmime() -> Iterator[SmtpServer]:
    server = SmtpServer()
    # aiosmtpd offers 8BITMIME unless it decodes the data (decode_data=True).
    server.controller = Controller(
        server.handler, hostname="127.0.0.1", port=server.port, decode_data=True
    )
    server.controller.start()
    yield server
    server.stop()


async def _send(port: int, msg: EmailMessage) -> None:
    pool = SmtpPool(
        settings=Settings(smtp_host="127.0.0.1", smtp_port=port, secret_key=TEST_SECRET), size=1
    )
    try:
        await pool.send(msg)
    finally:
        await pool.close()


async def test_a_server_without_8bitmime_gets_quoted_printable_as_before(
    smtp_without_8bitmime: SmtpServer,
) -> None:
    new, _ = both()
    await _send(smtp_without_8bitmime.port, new)
    (got,) = smtp_without_8bitmime.received
    raw = got.raw
    assert max(len(line) for line in raw.splitlines()) <= 78 and raw.isascii()
    back = read_back(raw)
    for subtype in ("plain", "html"):
        assert part(back, subtype)["Content-Transfer-Encoding"] == "quoted-printable"
        sent = part(back, subtype).get_content().replace("\r\n", "\n")
        assert sent == part(new, subtype).get_content()
    # What went out before this change (the HTML's template whitespace aside), byte for byte.
    _, old = both(wide=False)
    expected = flatten_message(old, cte_type="7bit").replace(b"\r\n", b"\n")
    assert raw.replace(b"\r\n", b"\n") == expected


async def test_a_server_with_8bitmime_gets_the_lines_as_they_are(smtp: SmtpServer) -> None:
    new, _ = both(language="es")
    await _send(smtp.port, new)
    (got,) = smtp.received
    assert got.raw.replace(b"\r\n", b"\n") == (wire_bytes(new) or b"").replace(b"\r\n", b"\n")
    back = read_back(got.raw)
    assert part(back, "plain")["Content-Transfer-Encoding"] == "8bit"


def test_a_changed_email_goes_to_a_server_without_8bitmime_as_it_is() -> None:
    new, _ = both()
    assert isinstance(new, BuiltEmail)
    assert for_7bit_server(new) is not new
    new["Reply-To"] = "x@district.example"
    assert for_7bit_server(new) is new


def test_an_email_made_by_set_content_also_has_its_7bit_form() -> None:
    # Text holding the boundary goes the email package's way: still two forms.
    new, old = both(notes=f"--{message_module.BOUNDARY}--\n" + NOTES)
    assert isinstance(new, BuiltEmail) and new.kept_bytes() is None
    for subtype in ("plain", "html"):
        made, ref = part(new, subtype), part(old, subtype)
        assert made["Content-Transfer-Encoding"] == ref["Content-Transfer-Encoding"] == "8bit"
        assert made.get_content() == ref.get_content()
    narrow = for_7bit_server(new)
    assert narrow is not new
    assert part(narrow, "plain")["Content-Transfer-Encoding"] == "quoted-printable"
    assert part(new, "plain")["Content-Transfer-Encoding"] == "8bit"


def test_an_email_to_a_non_ascii_address_goes_as_the_generator_writes_it_with_its_lines() -> None:
    # SMTPUTF8 (an address that is not ASCII): the generator's bytes of the same message.
    new, _ = both(language="es")
    raw = flatten_message(new, utf8=True, cte_type="8bit")
    lean = wire_bytes(new)
    assert lean is not None
    # The same body (the headers differ: UTF-8 there instead of encoded words).
    assert raw.split(b"\r\n\r\n", 1)[1] == lean.split(b"\r\n\r\n", 1)[1]
    back = read_back(raw)
    for subtype in ("plain", "html"):
        assert part(back, subtype)["Content-Transfer-Encoding"] == "8bit"
        sent = part(back, subtype).get_content().replace("\r\n", "\n")
        assert sent == part(new, subtype).get_content()
