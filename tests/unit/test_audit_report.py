"""The after-action report (`dooralert audit report`), rendered from hand-built events."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import (
    EncounterReported,
    EncounterUpdated,
    EscalationDecided,
    EscalationRaised,
    Event,
    IncidentAcknowledged,
    IncidentResolved,
    MessageDeadLettered,
    NotesForgotten,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    PatternDetected,
)
from services.audit.note import Checkpoint, Signer, sign_checkpoint
from services.audit.report import build_report as build_with_key
from services.audit.report import render_html, render_markdown
from services.domain.sealing import DataKey, new_key, seal

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
NAMES = {
    "law-dept": "Law Department (on call)",
    "safety-office": "Office of Safety",
    "chief-of-schools": "Chief of Schools",
}
ORIGIN = "dooralert.example/test"
EVIL_LOCATION = "Door <b>3</b> & gym | side"
EVIL_NOTES = "Agent said <script>alert('x')</script>\nsecond line | *bold*"
KEY = new_key("inc-1", now=T0)


def build_report(*args: Any, **kwargs: Any) -> Any:
    """The report as an auditor builds it while the incident's notes key exists."""
    return build_with_key(*args, **{"notes_key": KEY, **kwargs})


def sealed(data: dict[str, Any], event_id: str) -> dict[str, Any]:
    """`data` as intake stores it: any clear note replaced by its seal."""
    out = dict(data)
    for field in ("notes", "note"):
        if field in out:
            text = out.pop(field)
            box = seal(text, KEY, incident_id="inc-1", event_id=event_id, field=field)
            out[f"{field}_sealed"] = box.model_dump()
    return out


def env(
    type_: type[Event],
    at: datetime,
    data: dict[str, Any],
    *,
    source: str = "router",
    actor: str = "system",
    n: int = 0,
) -> Event:
    event_id = f"e-{type_.__name__}-{n}"
    return type_(
        id=event_id,
        source=source,
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=at,
        recorded_at=at,
        correlation_id="inc-1",
        actor=actor,
        data=sealed(data, event_id),
    )  # type: ignore[arg-type]


def recipient(nid: str, role: str, contact: str) -> dict[str, str]:
    return {"notification_id": nid, "role": role, "contact_id": contact, "channel": "email"}


def requested(
    nid: str, role: str, contact: str, at: datetime, *, tier: int = 0, kind: str = "alert"
) -> Event:
    return env(
        NotificationRequested,
        at,
        {
            **recipient(nid, role, contact),
            "tier": tier,
            "kind": kind,
            "severity": "high",
            "routes": ["admin-warrant"],
        },
        n=hash(nid) % 10**6,
    )


def incident() -> list[tuple[int, Event]]:
    """A whole incident: report, decision, alerts (one fails), an ack, an escalation,
    an update, the all-clear and a dead letter, at stream sequences 3, 5, 7…"""
    s = timedelta(seconds=1)
    events: list[Event] = [
        env(
            EncounterReported,
            T0,
            {
                "school_id": "hamline",
                "occurred_at": T0.isoformat(),
                "location": EVIL_LOCATION,
                "agency_stated": "ice",
                "agent_count": 2,
                "credentials_shown": True,
                "document": "administrative_warrant",
                "signed_by_judge": "no",
                "purpose": "student",
                "entry": "kept_outside",
                "notes": EVIL_NOTES,
            },
            source="intake",
            actor="staff-k1",
        ),
        env(
            EscalationDecided,
            T0 + s,
            {
                "routes": ["admin-warrant"],
                "severity": "critical",
                "notify_roles": ["law", "safety"],
                "require_ack": ["law", "safety"],
                "ack_deadline": (T0 + 5 * 60 * s).isoformat(),
                "recipients": [
                    recipient("n-law", "law", "law-dept"),
                    recipient("n-safety", "safety", "safety-office"),
                ],
                "unresolved_roles": ["family_liaison"],
            },
        ),
        requested("n-law", "law", "law-dept", T0 + s),
        requested("n-safety", "safety", "safety-office", T0 + s),
        env(
            NotificationSent,
            T0 + 3 * s,
            {**recipient("n-law", "law", "law-dept"), "attempt": 2, "reply": "250 OK"},
            source="notifier",
        ),
        env(
            NotificationFailed,
            T0 + 4 * s,
            {
                **recipient("n-safety", "safety", "safety-office"),
                "attempt": 1,
                "permanent": True,
                "reason": "550 mailbox unavailable",
            },
            source="notifier",
        ),
        env(
            IncidentAcknowledged,
            T0 + 91 * s,
            {"role": "law", "contact_id": "law-dept", "notification_id": "n-law", "via": "link"},
            source="intake",
            actor="contact:law-dept",
        ),
        env(
            EscalationRaised,
            T0 + 301 * s,
            {
                "tier": 1,
                "reason": "deadline",
                "missing_roles": ["safety"],
                "recipients": [recipient("n-chief", "safety", "chief-of-schools")],
                "next_deadline": (T0 + 601 * s).isoformat(),
            },
        ),
        requested("n-chief", "safety", "chief-of-schools", T0 + 301 * s, tier=1, kind="escalation"),
        env(
            EncounterUpdated,
            T0 + 400 * s,
            {"entry": "left", "notes": "They left <i>now</i>"},
            source="intake",
            actor="staff-k1",
        ),
        env(
            IncidentResolved,
            T0 + 500 * s,
            {"note": "All clear & safe"},
            source="intake",
            actor="staff-k1",
        ),
        env(
            MessageDeadLettered,
            T0 + 501 * s,
            {
                "stream_sequence": 9,
                "subject": "dooralert.hamline.inc-1.notification.requested",
                "consumer": "notifier",
                "reason": "max deliveries reached (20 attempts)",
            },
            source="notifier",
        ),
    ]
    return [(3 + 2 * i, e) for i, e in enumerate(events)]  # last event at seq 25


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def notes(signer: Signer, *sizes: int) -> list[str]:
    return [sign_checkpoint(signer, Checkpoint(ORIGIN, size, bytes([size]) * 32)) for size in sizes]


def test_markdown_tells_who_was_told_who_acknowledged_and_how_fast() -> None:
    text = render_markdown(
        build_report(incident(), now=NOW, contact_names=NAMES, school_name="Hamline Elementary")
    )
    assert "# After-action report: incident inc-1" in text
    assert "Hamline Elementary (hamline)" in text
    assert "| Severity | critical |" in text and "admin\\-warrant" not in text
    assert "| Rules matched | admin-warrant |" in text
    assert "| Roles with no contact | family\\_liaison |" in text
    law = next(line for line in text.splitlines() if line.startswith("| law | law-dept"))
    assert "Law Department (on call)" in law and "delivered 2025-03-01 15:30:03Z" in law
    assert "| 2 |" in law  # attempts
    safety = next(line for line in text.splitlines() if line.startswith("| safety | safety-"))
    assert "failed 2025-03-01 15:30:04Z" in safety and "550 mailbox unavailable" in safety
    # acknowledged 91 s after the first notification to law-dept, which was at T0 + 1 s
    ack = next(
        line
        for line in text.splitlines()
        if line.startswith("| law | law-dept | Law") and "link" in line
    )
    assert "2025-03-01 15:31:31Z" in ack and "1m 30s" in ack
    assert "Never acknowledged" not in text  # resolved: nothing is still missing


def test_markdown_lists_escalations_follow_ups_and_dead_letters() -> None:
    text = render_markdown(build_report(incident(), now=NOW, contact_names=NAMES))
    esc = next(line for line in text.splitlines() if line.startswith("| 1 | deadline"))
    assert "Chief of Schools (chief-of-schools)" in esc and "| safety |" in esc
    assert "2025-03-01 15:40:01Z" in esc  # next deadline
    assert "Update: Entry: Agents left" in text
    assert "Resolved (all clear)" in text and "All clear \\& safe" in text
    assert "## Dead letters" in text and "max deliveries reached (20 attempts)" in text
    assert "Status: **resolved** (resolved 2025-03-01 15:38:20Z)" in text


def test_contacts_are_named_from_the_directory_never_by_address() -> None:
    text = render_markdown(build_report(incident(), now=NOW, contact_names={}))
    assert "(not in district.yaml)" in text
    assert "@" not in text


def test_user_text_cannot_break_the_markdown() -> None:
    text = render_markdown(build_report(incident(), now=NOW, contact_names=NAMES))
    location = next(line for line in text.splitlines() if line.startswith("| Location |"))
    assert location == "| Location | Door \\<b\\>3\\</b\\> \\& gym \\| side |"
    assert "<script>" not in text and "\\<script\\>" in text
    assert "> second line \\| \\*bold\\*" in text  # notes quoted line by line


def test_html_is_escaped_printable_and_self_contained() -> None:
    html = render_html(build_report(incident(), now=NOW, contact_names=NAMES))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Door &lt;b&gt;3&lt;/b&gt; &amp; gym | side" in html
    assert "They left &lt;i&gt;now&lt;/i&gt;" in html
    assert "@media print" in html
    for external in ("http://", "https://", "<link", "src="):
        assert external not in html
    assert "Law Department (on call)" in html and "1m 30s" in html
    assert "Chief of Schools (chief-of-schools)" in html


def test_the_anchor_is_the_first_checkpoint_covering_the_last_event(signer: Signer) -> None:
    cps = notes(signer, 10, 24, 30, 40)  # the last event is seq 25
    report = build_report(incident(), now=NOW, checkpoints=cps, verifier=signer.verifier)
    a = report.anchor
    assert a is not None and (a.last_seq, a.size, a.checkpoint_number) == (25, 30, 3)
    assert a.verified is True
    text = render_markdown(report)
    root = base64.b64encode(bytes([30]) * 32).decode()
    assert f"- Checkpoint #3 of {ORIGIN}, tree size 30\n- Root: `{root}`" in text
    assert f"- Signature verifies with key `{ORIGIN}+{signer.key_id.hex()}`" in text
    assert "verifies</span> with key" in render_html(report)


def test_a_checkpoint_signed_by_another_key_is_reported_as_not_verifying(signer: Signer) -> None:
    other = Signer.generate(ORIGIN)
    report = build_report(
        incident(), now=NOW, checkpoints=notes(signer, 25), verifier=other.verifier
    )
    assert report.anchor is not None and report.anchor.verified is False
    assert "Signature **does NOT verify** with key" in render_markdown(report)
    assert "does NOT verify" in render_html(report)


def test_without_a_key_the_signature_is_not_claimed_checked(signer: Signer) -> None:
    text = render_markdown(build_report(incident(), now=NOW, checkpoints=notes(signer, 25)))
    assert "tree size 25" in text and "Signature not checked (pass --key" in text


def test_an_incident_beyond_the_last_checkpoint_is_not_yet_anchored(signer: Signer) -> None:
    report = build_report(
        incident(), now=NOW, checkpoints=notes(signer, 10, 24), verifier=signer.verifier
    )
    assert report.anchor is not None and not report.anchor.anchored
    assert "Not yet anchored" in render_markdown(report)
    assert "Not yet anchored" in render_html(report)


def test_an_open_incident_names_the_roles_that_never_acknowledged() -> None:
    opening = incident()[:7]  # up to and including the law ack
    report = build_report(opening, now=NOW, contact_names=NAMES)
    assert report.status == "open" and report.missing_acks == ["safety"]
    assert "Never acknowledged: safety" in render_markdown(report)
    assert "Follow-ups" in render_markdown(report) and "None." in render_markdown(report)


def test_a_redelivered_event_is_reported_once() -> None:
    events = incident()
    dup = [*events[:8], (99, events[7][1]), *events[8:]]  # the escalation, stored twice
    report = build_report(dup, now=NOW, contact_names=NAMES)
    assert len(report.escalations) == 1 and len(report.acknowledgements) == 1


def test_no_events_is_an_error_not_an_empty_report() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        build_report([], now=NOW)


def pattern_alert(incidents: list[str], *, name: str = "multi-school") -> PatternDetected:
    return PatternDetected(
        id=f"p-{name}",
        source="router",
        incident_id=f"pattern-{name}",
        school_id="district",
        occurred_at=T0 + timedelta(minutes=3),
        recorded_at=T0 + timedelta(minutes=3),
        correlation_id=f"pattern-{name}",
        actor="system",
        data={
            "pattern": name,
            "window_minutes": 30,
            "incident_ids": incidents,
            "school_ids": ["hamline", "lincoln-park"],
            "severity": "critical",
            "recipients": [],
        },
    )  # type: ignore[arg-type]


def test_the_report_lists_the_pattern_alerts_the_incident_was_part_of() -> None:
    alerts = [(40, pattern_alert(["inc-1", "inc-2"])), (41, pattern_alert(["inc-9"], name="other"))]
    built = build_report(incident(), now=NOW, pattern_alerts=alerts)
    assert [(p.alert_id, p.seq) for p in built.pattern_alerts] == [("pattern-multi-school", 40)]
    text = render_markdown(built)
    assert "## Pattern alerts" in text and "pattern-multi-school" in text
    assert "hamline, lincoln-park" in text and "pattern-other" not in text
    assert "Pattern alerts" in render_html(built) and "pattern-multi-school" in render_html(built)
    assert "## Pattern alerts" not in render_markdown(build_report(incident(), now=NOW))


# --- sealed notes: readable while the key exists, "removed on <date>" after -------------------


def forgotten(at: datetime) -> tuple[int, Event]:
    return (27, env(NotesForgotten, at, {}, source="operator", actor="operator"))


def test_the_notes_are_readable_in_the_report_while_the_key_exists() -> None:
    text = render_markdown(build_report(incident(), now=NOW))
    assert "second line" in text and "They left" in text and "All clear \\& safe" in text
    assert "notes removed" not in text


def test_after_audit_forget_the_report_says_notes_removed_on_that_date() -> None:
    at = T0 + timedelta(hours=1)
    built = build_with_key([*incident(), forgotten(at)], now=NOW, notes_key=None)
    text = render_markdown(built)
    assert "second line" not in text and "They left" not in text and "All clear" not in text
    assert f"notes removed on {at:%Y-%m-%d}" in text
    assert built.notes is None and built.notes_removed_on == at


def test_an_expired_key_shows_the_notes_removed_at_the_end_of_retention() -> None:
    late = T0 + timedelta(days=3)
    built = build_report(incident(), now=late, notes_retention=timedelta(days=2))
    assert built.notes is None
    assert built.notes_removed_on == KEY.created_at + timedelta(days=2)
    assert "notes removed on 2025-03-03" in render_markdown(built)


def test_a_sealed_note_moved_onto_another_event_does_not_open() -> None:
    events = incident()
    seq, update = next((s, e) for s, e in events if isinstance(e, EncounterUpdated))
    resolved = next(e for _, e in events if isinstance(e, IncidentResolved))
    moved = resolved.model_copy(
        update={"data": resolved.data.model_copy(update={"note_sealed": None})}
    )
    # the update's sealed note pasted onto the all-clear (same incident, same key)
    stolen = update.data.notes_sealed
    moved = moved.model_copy(update={"data": moved.data.model_copy(update={"note_sealed": stolen})})
    swapped = [(s, moved if e is resolved else e) for s, e in events]
    built = build_report(swapped, now=NOW)
    resolved_row = next(f for f in built.follow_ups if f.kind == "resolved")
    assert resolved_row.note is None and seq > 0


def test_a_tampered_sealed_note_does_not_open() -> None:
    events = incident()
    reported = events[0][1]
    assert isinstance(reported, EncounterReported) and reported.data.notes_sealed is not None
    box = reported.data.notes_sealed
    flipped = base64.b64encode(
        bytes([base64.b64decode(box.ct)[0] ^ 1]) + base64.b64decode(box.ct)[1:]
    ).decode()
    bad = reported.model_copy(
        update={
            "data": reported.data.model_copy(
                update={"notes_sealed": box.model_copy(update={"ct": flipped})}
            )
        }
    )
    built = build_report([(events[0][0], bad), *events[1:]], now=NOW)
    assert built.notes is None


def test_with_another_incidents_key_nothing_opens() -> None:
    other: DataKey = new_key("inc-2", now=T0)
    built = build_with_key(incident(), now=NOW, notes_key=other)
    assert built.notes is None
    assert all(f.note is None for f in built.follow_ups)
