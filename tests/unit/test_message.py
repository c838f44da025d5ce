"""The alert email, and how SMTP replies become delivery outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from schemas.events import EncounterReported, NotificationRequested, derive_id
from schemas.report import EncounterReport
from services.notifier.channels import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    _classify,
    scrub,
)
from services.notifier.message import AlertContext, build_email, header_safe, message_id
from tests.support import report, stored_report

AT = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
NID = derive_id("inc-1", "notification", "0", "law", "law-dept", "email")
CTX = AlertContext(
    district_name="Demo Public Schools",
    school_name="Hamline Elementary",
    timezone="America/Chicago",
    recipient_name="Law Department",
    status_url="http://dooralert.example/incidents/inc-1?token=abc",
    emergency_phone="+1 555 0100",
)


def encounter(r: EncounterReport) -> EncounterReported:
    return EncounterReported(
        id=derive_id("inc-1", "encounter.reported"),
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=AT,
        recorded_at=AT,
        correlation_id="inc-1",
        actor="key-hamline",
        data=stored_report(r),
    )


def request(severity: str = "high") -> NotificationRequested:
    return NotificationRequested(
        id=derive_id(NID, "requested"),
        source="router",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=AT,
        recorded_at=AT,
        correlation_id="inc-1",
        actor="system",
        data={
            "notification_id": NID,
            "role": "law",
            "contact_id": "law-dept",
            "channel": "email",
            "severity": severity,
            "routes": ["any-encounter"],
        },
    )


def email(
    *, severity: str = "high", ctx: AlertContext = CTX, unchecked: bool = False, **overrides: Any
) -> EmailMessage:
    if unchecked:
        # model_construct skips validation: the email must be safe even if a bad value got
        # past the report model (an older event, a future bug).
        valid = EncounterReport.model_validate({**report(), "occurred_at": AT})
        r = EncounterReport.model_construct(**{**dict(valid), **overrides})
    else:
        r = EncounterReport.model_validate({**report(**overrides), "occurred_at": AT})
    return build_email(
        request=request(severity),
        report=encounter(r),
        ctx=ctx,
        sender="dooralert <alerts@dooralert.invalid>",
        to="law@district.example",
        notes=r.notes,
    )


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def reparsed(msg: EmailMessage) -> EmailMessage:
    return message_from_bytes(msg.as_bytes(), policy=policy.default)


def test_the_subject_names_school_agency_document_and_entry() -> None:
    assert email()["Subject"] == (
        "[dooralert ALERT] Agents at Hamline Elementary: ICE, Administrative warrant - Kept outside"
    )


def test_a_critical_alert_says_so_in_the_subject_and_body() -> None:
    msg = email(severity="critical")
    assert msg["Subject"].startswith("[dooralert CRITICAL]")
    assert text_of(msg).startswith("CRITICAL: ")


def test_subject_has_no_line_breaks_even_if_location_or_school_name_had_them() -> None:
    ctx = AlertContext(**{**CTX.__dict__, "school_name": "Hamline\r\nBcc: spy@evil.example"})
    msg = email(
        unchecked=True, ctx=ctx, location="Front door\r\nBcc: spy@evil.example\r\n\r\n<b>x</b>"
    )
    assert "\r" not in msg["Subject"] and "\n" not in msg["Subject"]
    back = reparsed(msg)
    assert back["Bcc"] is None
    subjects = back.get_all("Subject")
    assert subjects is not None and len(subjects) == 1
    assert back["To"] == "law@district.example"


def test_header_safe_keeps_one_printable_line() -> None:
    assert header_safe("a\r\nb\tc\x00d\u2028e") == "a b c d e"
    assert header_safe("x" * 500) == "x" * 200


def test_the_html_part_escapes_markup_in_notes_and_location() -> None:
    msg = email(unchecked=True, notes="<script>alert(1)</script>", location="<img src=x>")
    html = html_of(msg)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x&gt;" in html


def test_a_plain_text_part_carries_the_whole_report() -> None:
    msg = email(notes="Two agents asked for the office.", agent_count=3, location="Gym door")
    assert msg.is_multipart()
    text = text_of(msg)
    for expected in (
        "Hamline Elementary",
        "Gym door",
        "ICE",
        "3 (credentials shown: yes)",
        "Administrative warrant",
        "Kept outside",
        "Two agents asked for the office.",
        CTX.status_url,
        "+1 555 0100",
        "inc-1",
    ):
        assert expected in text


def test_the_time_is_shown_in_the_districts_timezone() -> None:
    assert "2025-03-01 09:30 CST" in text_of(email())


def test_message_id_is_derived_from_the_notification_id() -> None:
    first, again = email(), email()
    assert first["Message-ID"] == message_id(NID) == f"<{NID}@dooralert>"
    assert again["Message-ID"] == first["Message-ID"]
    assert first["X-Dooralert-Incident"] == "inc-1"
    assert first["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize("document", ["administrative_warrant", "administrative_subpoena", "none"])
def test_the_protocol_for_non_judicial_documents_says_do_not_admit(document: str) -> None:
    msg = email(document=document)
    assert "do not admit" in text_of(msg).lower()
    assert "do not admit" in html_of(msg).lower()


@pytest.mark.parametrize("document", ["judicial_warrant", "court_order", "judicial_subpoena"])
def test_the_protocol_for_judicial_documents_says_check_it_and_wait_for_law(document: str) -> None:
    text = text_of(email(document=document))
    assert "signed by a judge" in text and "wait for the law department" in text


def test_the_alert_carries_no_student_warning_footer() -> None:
    assert "names no students or families" in text_of(email())


# --- SMTP replies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "address"),
    [
        (
            "550 5.1.1 <principal@hamline.district.example>: Recipient address rejected",
            "principal@hamline.district.example",
        ),
        ("250 2.0.0 Ok: queued as 4F3A for law-oncall@district.example", "law-oncall@"),
        ("452 4.2.2 mailbox full (chief@district.example)", "chief@district.example"),
    ],
)
def test_scrub_removes_email_addresses_from_smtp_replies(reply: str, address: str) -> None:
    cleaned = scrub(reply)
    assert address not in cleaned and "@" not in cleaned
    assert "<address>" in cleaned
    assert cleaned.split()[0] == reply.split()[0]


def test_scrub_keeps_one_short_line() -> None:
    assert scrub("451 4.3.0\r\n  try   again\n later") == "451 4.3.0 try again later"
    assert len(scrub("x " * 1000)) == 300


def test_delivery_errors_never_carry_an_address() -> None:
    err = DeliveryError("550 <bob@example.org> unknown")
    assert "bob@" not in err.reason and "bob@" not in str(err)


@pytest.mark.parametrize("code", [421, 450, 451, 452, 454])
def test_smtp_4xx_replies_are_transient(code: int) -> None:
    err = _classify(code, "try again later")
    assert isinstance(err, TransientDeliveryError) and not err.permanent
    assert err.reason == f"{code} try again later"


@pytest.mark.parametrize("code", [500, 550, 552, 553, 554])
def test_smtp_5xx_replies_are_permanent(code: int) -> None:
    err = _classify(code, "no such user <x@y.example>")
    assert isinstance(err, PermanentDeliveryError) and err.permanent
    assert err.reason == f"{code} no such user <address>"
