"""The incident projection: the one fold behind the status page, the API and audit replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    Event,
    NotificationFailed,
    NotificationFailedData,
    NotificationRequested,
    NotificationSent,
    NotificationSentData,
    derive_id,
)
from services.domain.directory import load_directory
from services.domain.incident import evolve, fold
from services.intake.reports import encounter_event, parse_report
from services.router.decide import decide
from services.router.rules import load_rules
from tests.support import EXAMPLES, report

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def _common(at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "source": "notifier",
        "incident_id": "inc-1",
        "school_id": "hamline",
        "occurred_at": at,
        "recorded_at": at,
        "correlation_id": "inc-1",
        "actor": "system",
        **extra,
    }


def opening() -> list[Event]:
    """A reported encounter and the router's decision, as they would be in the log."""
    r = parse_report(report(), now=T0)
    reported = encounter_event(r, incident_id="inc-1", actor="key-hamline", now=T0)
    return [
        reported,
        *decide(reported, rules=load_rules(EXAMPLES), directory=load_directory(EXAMPLES), now=T0),
    ]


def requested(nid: str = "n1", at: datetime = T0) -> NotificationRequested:
    return NotificationRequested(
        id=derive_id(nid, "requested"),
        data={
            "notification_id": nid,
            "role": "law",
            "contact_id": "law-dept",
            "channel": "email",
            "severity": "high",
            "routes": ["any-encounter"],
        },
        **_common(at, source="router"),
    )


def sent(nid: str = "n1", attempt: int = 1, at: datetime | None = None) -> NotificationSent:
    at = at or T0 + timedelta(seconds=attempt)
    return NotificationSent(
        id=derive_id(nid, "sent"),
        data=NotificationSentData(
            notification_id=nid,
            role="law",
            contact_id="law-dept",
            channel="email",
            attempt=attempt,
            reply="250 OK",
        ),
        **_common(at),
    )


def failed(
    nid: str = "n1", attempt: int = 1, *, permanent: bool, reason: str = "451 try later"
) -> NotificationFailed:
    at = T0 + timedelta(seconds=attempt)
    return NotificationFailed(
        id=derive_id(nid, "failed", str(attempt)),
        data=NotificationFailedData(
            notification_id=nid,
            role="law",
            contact_id="law-dept",
            channel="email",
            attempt=attempt,
            permanent=permanent,
            reason=reason,
            next_attempt_in_seconds=None if permanent else 2.0,
        ),
        **_common(at),
    )


def status(events: list[Event], nid: str = "n1") -> str:
    state = fold(events)
    assert state is not None
    n = state.notification(nid)
    assert n is not None
    return n.status


def test_no_events_means_no_incident() -> None:
    assert fold([]) is None


def test_a_decided_incident_shows_its_report_severity_and_pending_alerts() -> None:
    events = opening()
    state = fold(events)
    assert state is not None
    assert (state.incident_id, state.school_id, state.status) == ("inc-1", "hamline", "open")
    assert state.report is not None and state.report.location == "Front entrance"
    assert state.reported_at == T0
    assert state.severity == "high"
    assert state.routes == ["any-encounter"]
    assert state.require_ack == ["law", "safety"]
    assert state.ack_deadline == T0 + timedelta(minutes=2)
    assert [n.contact_id for n in state.notifications] == [
        "law-dept",
        "law-counsel",
        "safety-office",
        "principal-hamline",
    ]
    assert {n.status for n in state.notifications} == {"requested"}
    assert state.event_count == len(events)


def test_a_sent_notification_shows_as_sent_with_its_time_and_attempt() -> None:
    state = fold([requested(), sent(attempt=2, at=T0 + timedelta(seconds=9))])
    assert state is not None
    n = state.notification("n1")
    assert n is not None
    assert (n.status, n.attempts, n.sent_at, n.requested_at) == (
        "sent",
        2,
        T0 + timedelta(seconds=9),
        T0,
    )


def test_a_transient_failure_keeps_the_notification_pending_and_counts_the_attempt() -> None:
    state = fold([requested(), failed(attempt=1, permanent=False, reason="451 busy")])
    assert state is not None
    n = state.notification("n1")
    assert n is not None
    assert (n.status, n.attempts, n.last_error, n.failed_at) == ("requested", 1, "451 busy", None)


def test_a_permanent_failure_marks_the_notification_failed() -> None:
    events: list[Event] = [
        requested(),
        failed(attempt=1, permanent=False),
        failed(attempt=2, permanent=True, reason="550 no such user"),
    ]
    state = fold(events)
    assert state is not None
    n = state.notification("n1")
    assert n is not None
    assert (n.status, n.attempts, n.last_error) == ("failed", 2, "550 no such user")
    assert n.failed_at == T0 + timedelta(seconds=2)


def test_a_retry_that_succeeds_after_failures_shows_as_sent() -> None:
    assert status([requested(), failed(attempt=1, permanent=False), sent(attempt=2)]) == "sent"


def test_a_late_failure_after_sent_does_not_undo_the_delivery() -> None:
    for late in (failed(attempt=1, permanent=True), failed(attempt=3, permanent=False)):
        state = fold([requested(), sent(attempt=2), late])
        assert state is not None
        n = state.notification("n1")
        assert n is not None
        assert (n.status, n.last_error, n.failed_at) == ("sent", None, None)


def test_reapplying_the_same_event_leaves_the_status_unchanged() -> None:
    for event in (requested(), sent(), failed(permanent=True), failed(permanent=False)):
        once = fold([requested(), event])
        twice = evolve(once, event)
        assert once is not None
        assert twice.notifications == once.notifications


def test_a_second_request_for_the_same_notification_does_not_reset_it() -> None:
    state = fold([requested(), sent(), requested(at=T0 + timedelta(minutes=1))])
    assert state is not None
    n = state.notification("n1")
    assert n is not None
    assert (n.status, n.requested_at) == ("sent", T0)
    assert len(state.notifications) == 1


def test_an_outcome_without_its_request_still_shows_the_notification() -> None:
    assert status([sent()]) == "sent"
    assert status([failed(permanent=True)]) == "failed"


def test_notifications_are_tracked_separately() -> None:
    state = fold([requested("a"), requested("b"), sent("a"), failed("b", permanent=True)])
    assert state is not None
    assert [(n.notification_id, n.status) for n in state.notifications] == [
        ("a", "sent"),
        ("b", "failed"),
    ]


# --- property: duplicates never change what the page says ---------------------------------

NOTIFICATION_EVENTS = st.sampled_from(["a", "b"]).flatmap(
    lambda nid: st.one_of(
        st.just(requested(nid)),
        st.integers(1, 4).map(lambda n: sent(nid, attempt=n)),
        st.tuples(st.integers(1, 4), st.booleans()).map(
            lambda t: failed(nid, attempt=t[0], permanent=t[1])
        ),
    )
)


@st.composite
def with_duplicates(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """A log and the same log as delivered with some events redelivered later on."""
    log = draw(st.lists(NOTIFICATION_EVENTS, min_size=1, max_size=10))
    # Each event appears once in the log; a redelivery always comes after the original.
    log = list({e.id: e for e in log}.values())
    delivered = list(log)
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(log) - 1))
        first = delivered.index(log[i])
        delivered.insert(draw(st.integers(first + 1, len(delivered))), log[i])
    return log, delivered


@settings(max_examples=300, deadline=None)
@given(pair=with_duplicates())
def test_notification_status_is_independent_of_duplicate_deliveries(
    pair: tuple[list[Event], list[Event]],
) -> None:
    log, delivered = pair
    clean, noisy = fold(log), fold(delivered)
    assert clean is not None and noisy is not None

    def view(state: Any) -> list[tuple[str, str, int, Any]]:
        return [(n.notification_id, n.status, n.attempts, n.sent_at) for n in state.notifications]

    assert view(noisy) == view(clean)
