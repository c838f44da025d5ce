"""The incident page's banner (pure): never "sent" before it is, late sending said loudly,
local times, and one row per contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.domain.incident import Acknowledgement, IncidentState, NotificationState
from services.intake.status_view import STALL_AFTER, banner, per_contact, recheck_at

T0 = datetime(2026, 12, 3, 4, 23, tzinfo=UTC)  # 10:23 PM in Chicago, the day before
CHICAGO = ZoneInfo("America/Chicago")


def note(role: str, contact: str, *, status: str = "requested", kind: str = "alert", sent=None):  # type: ignore[no-untyped-def]
    return NotificationState(
        notification_id=f"{kind}-{contact}",
        role=role,
        contact_id=contact,
        channel="email",
        kind=kind,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        requested_at=T0,
        sent_at=sent,
    )


def incident(*notes: NotificationState, acks: tuple[Acknowledgement, ...] = ()) -> IncidentState:
    return IncidentState(
        incident_id="i",
        school_id="hamline",
        recorded_at=T0,
        require_ack=["law", "safety"],
        ack_deadline=T0 + timedelta(minutes=2),
        notifications=list(notes),
        acknowledgements=list(acks),
    )


def words(state: IncidentState, *, after: timedelta, language: str = "en") -> str:
    b = banner(state, now=T0 + after, tz=CHICAGO, language=language, phone="+1 555 0100")
    return " ".join(([b.delayed] if b.delayed else []) + b.lines)


def test_nothing_is_called_sent_while_the_emails_are_still_only_requested() -> None:
    text = words(incident(note("law", "law-dept")), after=timedelta(seconds=3))
    assert "Report received at 10:23 PM" in text and "Alert sent" not in text
    assert "delayed" not in text


def test_sent_alert_names_whom_in_local_time_and_whom_to_call() -> None:
    sent = T0 + timedelta(seconds=1)
    state = incident(
        note("law", "law-dept", status="sent", sent=sent),
        note("safety", "safety-office", status="sent", sent=sent),
        note("principal", "principal-hamline", status="sent", sent=sent),
    )
    text = words(state, after=timedelta(seconds=5))
    assert (
        "Alert sent at 10:23 PM to the law department, the safety office and the principal "
        "— waiting for them to confirm." in text
    )
    assert "Keep the agents outside. No confirmation in 2 minutes? Call +1 555 0100." in text
    es = words(state, after=timedelta(seconds=5), language="es")
    assert "Alerta enviada a las 22:23 al departamento legal, a la oficina de seguridad y" in es


def test_confirmations_are_listed_and_the_call_advice_goes_once_all_confirmed() -> None:
    sent = T0 + timedelta(seconds=1)
    acks = tuple(
        Acknowledgement(role=r, contact_id=c, at=T0 + timedelta(minutes=1), via="link")
        for r, c in (("law", "law-dept"), ("safety", "safety-office"))
    )
    state = incident(note("law", "law-dept", status="sent", sent=sent), acks=acks)
    text = words(state, after=timedelta(minutes=1))
    assert "Confirmed by the law department at 10:24 PM." in text
    assert "Call" not in text and "Everyone who must confirm has confirmed." in text


def test_a_send_stuck_past_thirty_seconds_or_failed_says_call_now() -> None:
    stuck = incident(note("law", "law-dept"))
    assert "Sending is delayed — call +1 555 0100 now." not in words(
        stuck, after=STALL_AFTER - timedelta(seconds=1)
    )
    assert "Sending is delayed — call +1 555 0100 now." in words(stuck, after=STALL_AFTER)
    failed = incident(note("law", "law-dept", status="failed"))
    assert "Sending is delayed" in words(failed, after=timedelta(seconds=2))
    # The live page knows when to say it: the moment the first send turns late.
    assert recheck_at(stuck, T0) == T0 + STALL_AFTER
    # Nothing requested at all after 30 s (the router stalled) is late too.
    assert "Sending is delayed" in words(incident(), after=STALL_AFTER)


def test_follow_ups_are_grouped_per_contact_in_order_of_kind() -> None:
    state = incident(
        note("law", "law-dept", status="sent", sent=T0),
        note("safety", "safety-office", status="sent", sent=T0),
        note("law", "law-dept", kind="update"),
        note("law", "law-dept", kind="resolved"),
    )
    rows = per_contact(state)
    assert [r.contact_id for r in rows] == ["law-dept", "safety-office"]
    assert [n.kind for n in rows[0].items] == ["alert", "update", "resolved"]
