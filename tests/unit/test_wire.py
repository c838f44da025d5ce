"""wire.py writes an email's bytes directly instead of through the stdlib generator (issue 13:
that generator was about a fifth of the notifier's CPU in a burst). What it writes must be
byte for byte what aiosmtplib's send_message would send, for every email the notifier builds;
for anything else it gives up and the generator is used."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.report import EncounterReport
from services.notifier import smtp as smtp_module
from services.notifier import wire
from services.notifier.message import BOUNDARY, AlertContext, build_email, build_pattern_email
from services.notifier.smtp import SmtpPool
from services.notifier.wire import wire_bytes
from services.runtime.settings import Settings
from tests.support import TEST_SECRET, SmtpServer, report
from tests.unit.test_audit_report import pattern_alert
from tests.unit.test_message import AT, CTX, encounter, request


def email(
    *,
    language: str = "en",
    role: str = "law",
    notes: str | None = "Two agents asked for the office; kept outside.",
    ctx: AlertContext = CTX,
    ack_url: str | None = "https://dooralert.example/ack/abc.def",
    sender: str = "dooralert <alerts@dooralert.invalid>",
    **overrides: Any,
) -> EmailMessage:
    r = EncounterReport.model_validate({**report(**overrides), "occurred_at": AT})
    req = request("critical")
    req = req.model_copy(update={"data": req.data.model_copy(update={"role": role})})
    return build_email(
        request=req,
        report=encounter(r),
        ctx=ctx,
        sender=sender,
        to="law@district.example",
        language=language,
        ack_url=ack_url,
        notes=notes,
    )


def same_as_send_message(msg: EmailMessage) -> None:
    raw = wire_bytes(msg)
    assert raw is not None
    assert raw == flatten_message(msg)


def test_an_alert_in_each_language_and_variant_is_written_as_the_generator_writes_it() -> None:
    for language in ("en", "es", "xx"):
        for role in ("law", "family_liaison", "law+safety"):
            same_as_send_message(email(language=language, role=role))


def test_without_notes_or_ack_link_with_a_long_non_ascii_sender_and_recipient_name() -> None:
    ctx = AlertContext(
        district_name="Distrito Escolar Unificado de Nuestra Señora de los Ángeles " * 2,
        school_name="Escuela Primaria José Martí",
        timezone="America/Los_Angeles",
        recipient_name="Dña. María-José Núñez",
        status_url="https://dooralert.example/incidents/inc-1?token=" + "x" * 300,
        emergency_phone=None,
    )
    same_as_send_message(
        email(notes=None, ack_url=None, ctx=ctx, sender="Alertas Señal <alerts@d.example>")
    )
    same_as_send_message(email(language="es", ctx=ctx, location="Puerta trasera, edificio Ñ"))


def test_notes_that_break_lines_oddly_are_written_as_the_generator_writes_them() -> None:
    for notes in (
        "From the side door\r\n.\r\nline\rline\n\n",
        "x" * 2000,
        "naïve café — “quoted” ✓ 🚪\n" * 30,
        "trailing spaces   \n\ttab",
        "=3D ==== =\n=",
    ):
        same_as_send_message(email(notes=notes))


@settings(max_examples=150, deadline=None)
@given(
    notes=st.text(max_size=400),
    location=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=80,
    ).filter(lambda s: s.strip()),
)
def test_any_notes_and_location_are_written_as_the_generator_writes_them(
    notes: str, location: str
) -> None:
    try:
        msg = email(notes=notes or None, location=location)
    except ValueError:
        return  # a location the report model refuses never reaches an email
    raw = wire_bytes(msg)
    if raw is None:
        # Only an email whose own text holds the shared boundary gets another (unset until
        # the generator makes it) and goes the generator's way.
        assert msg.get_boundary() is None
        return
    assert raw == flatten_message(msg)


def test_an_email_whose_text_holds_the_boundary_is_left_to_the_generator() -> None:
    msg = email(notes=f"--{BOUNDARY}--")
    assert msg.get_boundary() is None
    assert wire_bytes(msg) is None
    # The generator makes another, so the text arrives whole.
    sent = message_from_bytes(flatten_message(msg), policy=policy.default)
    assert isinstance(sent, EmailMessage)
    body = sent.get_body(("plain",))
    assert body is not None and f"--{BOUNDARY}--" in body.get_content()


def test_the_pattern_email_is_written_as_the_generator_writes_it() -> None:
    for language in ("en", "es"):
        msg = build_pattern_email(
            request=request(),
            pattern=pattern_alert(["inc-1", "inc-2"]),
            school_names={"hamline": "Hamline Elementary"},
            ctx=CTX,
            sender="dooralert <alerts@dooralert.invalid>",
            to="lead@district.example",
            language=language,
        )
        same_as_send_message(msg)


def test_bcc_and_shapes_it_does_not_know_are_left_to_the_generator() -> None:
    msg = email()
    msg["Bcc"] = "hidden@district.example"
    assert wire_bytes(msg) is None
    attached = email()
    attached.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")
    assert wire_bytes(attached) is None


async def test_the_pool_sends_the_same_bytes_either_way(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[bytes | None] = []

    def spy(message: EmailMessage) -> bytes | None:
        # The first send as if wire.py gave up (the generator's bytes), the second by wire.py.
        written.append(wire.wire_bytes(message) if written else None)
        return written[-1]

    monkeypatch.setattr(smtp_module, "wire_bytes", spy)
    pool = SmtpPool(
        settings=Settings(smtp_host="127.0.0.1", smtp_port=smtp.port, secret_key=TEST_SECRET),
        size=1,
    )
    msg = email(notes="naïve café\n.leading dot\nFrom the door")
    try:
        await pool.send(msg)
        await pool.send(msg)
    finally:
        await pool.close()
    assert len(written) == 2 and written[0] is None and written[1] is not None
    first, second = smtp.received
    assert first.rcpt == second.rcpt == ["law@district.example"]
    assert first.raw == second.raw
