"""The intake's I/O: reading incidents from the event log and recording events on it.

The API and the pages both call these; the decisions themselves are in domain/. A failure of
the log becomes `Unavailable` (503, nothing recorded); any other exception is a bug and
propagates to the 500 handler.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from schemas.events import Event, event_subject, parse_stored
from schemas.report import TOKEN_PATTERN, EncounterReport
from services.domain.directory import School
from services.domain.incident import IncidentState, fold
from services.domain.notes import open_notes, reveal
from services.domain.sealing import DataKey, NotesUnavailable
from services.eventlog.interface import Appended, EventLog
from services.intake.domain.followups import decide_follow_up, decide_reopen
from services.intake.domain.idempotency import (
    compare_stored,
    compare_update,
    incident_id_for,
    update_id,
)
from services.intake.domain.refusals import Refused
from services.intake.errors import LOG_FAILURES, ApiError, Unavailable, refuse
from services.intake.notes import IntakeNotes, Sealer
from services.intake.reports import encounter_event, parse_report
from services.runtime.logging import get_logger

log = get_logger("dooralert.intake")
A = TypeVar("A")
B = TypeVar("B")


@contextmanager
def log_unreachable(what: str, **context: object) -> Iterator[None]:
    """Turn the event log's failures inside the block into `Unavailable`."""
    try:
        yield
    except LOG_FAILURES as exc:
        log.error(what, error=type(exc).__name__, **context)
        raise Unavailable from exc


async def project(
    event_log: EventLog, incident_id: str, *, notes: IntakeNotes | None = None
) -> IncidentState | None:
    """The incident's current state; None if the log has no such incident. With `notes`, its
    notes opened while the incident's key lasts (else marked removed); without, no notes."""
    if not re.fullmatch(TOKEN_PATTERN, incident_id):
        return None  # not an id dooralert makes (and a "." or "*" would widen the subject)
    with log_unreachable("incident.not_read", incident=incident_id):
        events = await event_log.read_incident(incident_id)
        state = fold(events, incident_id=incident_id)
        if state is None:
            return None
        if notes is None:
            return reveal(state, [], None, now=datetime.now(UTC), retention=timedelta(0))
        return await notes.reveal(state, [e for e in events if e.incident_id == incident_id])


async def record(event_log: EventLog, event: Event) -> Appended:
    """Append one event; `Unavailable` if the log does not take it."""
    with log_unreachable("event.not_recorded", incident=event.incident_id, type=event.type):
        return await event_log.append(event)


async def _stored_report(event_log: EventLog, school_id: str, incident_id: str) -> Event | None:
    """The report already stored for this incident, if any."""
    stored = await event_log.last(school_id, incident_id, "encounter.reported")
    if stored is None:
        return None
    try:
        return parse_stored(stored, event_subject(school_id, incident_id, "encounter.reported"))
    except ValueError as exc:
        # A stored report this version cannot read: nothing can be compared or recorded.
        log.error("report.stored_unreadable", incident=incident_id)
        raise Unavailable from exc


async def _check_repeat(
    event_log: EventLog,
    school: School,
    incident_id: str,
    report: EncounterReport,
    *,
    had_time: bool,
    notes: IntakeNotes | None,
) -> bool:
    """Whether this incident's report is already stored; refused if it is another report."""
    prior = await _stored_report(event_log, school.id, incident_id)
    return await _is_repeat(prior, report, had_time=had_time, notes=notes, key=None)


async def _is_repeat(
    prior: Event | None,
    report: EncounterReport,
    *,
    had_time: bool,
    notes: IntakeNotes | None,
    key: DataKey | None,
) -> bool:
    """Whether `prior` (the report stored for this incident, if any) is this report; refused
    if it is another. Its notes are opened with `key` (the incident's, in hand), else with
    the key read now."""
    prior_notes = None
    if prior is not None and notes is not None:
        try:
            if key is None:
                key = await notes.key(prior.incident_id)
            prior_notes = open_notes(prior, key, now=datetime.now(UTC), retention=notes.retention)
        except NotesUnavailable:
            prior_notes = None  # forgotten already: compared without them
    outcome = compare_stored(prior, report, new_had_time=had_time, prior_notes=prior_notes)
    if isinstance(outcome, Refused):
        refuse(outcome)
    return outcome == "same"


async def _both(
    first: Awaitable[A] | None, second: Awaitable[B] | None
) -> tuple[A | None, B | None]:
    """Two independent requests (either may be None: not needed) at once: their messages
    leave in one write and their answers come back in one round trip. The first failure is
    raised once both have settled."""
    if first is None or second is None:
        return (
            await first if first is not None else None,
            await second if second is not None else None,
        )
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b


async def submit_report(
    event_log: EventLog,
    raw: Any,
    *,
    school: School,
    actor: str,
    idempotency_key: str | None,
    now: datetime,
    admit: Callable[[], None] | None = None,
    notes: IntakeNotes | None = None,
    meanwhile: Callable[[str], None] | None = None,
) -> tuple[str, bool]:
    """Record one report (`raw`: its JSON). Returns (incident id, whether it is new).

    `admit` is called just before a new report is appended (never for a retry of one already
    recorded), and raises to refuse it: the school's report limit. `meanwhile` is called with
    the incident id while the append awaits its acknowledgement (`while_acknowledged`):
    work for the answer, which the caller gives only once this returns (the report stored)."""
    if isinstance(raw, dict) and "school_id" in raw and raw["school_id"] != school.id:
        raise ApiError(403, f"this intake key is for school {school.id!r} only")
    report = parse_report(raw, now=now)
    # A new incident with notes: an id whose notes key is already stored, if one is at hand.
    fresh = report.notes and notes is not None and idempotency_key is None
    ahead = notes.new_incident() if fresh and notes is not None else None
    incident_id = ahead[0] if ahead else incident_id_for(school.id, idempotency_key)
    had_time = isinstance(raw, dict) and raw.get("occurred_at") is not None
    with log_unreachable("report.not_recorded", school=school.id):
        # The notes key (made if the incident has none: stored, acknowledged, before the
        # report that needs it is appended below) and, under an Idempotency-Key, the report
        # already stored, are asked for at once: neither depends on the other.
        seal, prior = await _both(
            _sealer(notes, incident_id, now=now, likely_new=True)
            if report.notes and ahead is None
            else None,
            _stored_report(event_log, school.id, incident_id) if idempotency_key else None,
        )
        if ahead:
            seal = ahead[1]
        event = encounter_event(report, incident_id=incident_id, actor=actor, now=now, seal=seal)
        if idempotency_key and await _is_repeat(
            prior, report, had_time=had_time, notes=notes, key=seal.key if seal else None
        ):
            return incident_id, False
        if admit is not None:
            admit()
        if meanwhile is not None:
            while_acknowledged(meanwhile, incident_id)
        appended = await event_log.append(event)
        if appended.duplicate and idempotency_key:
            # Lost a race with a concurrent request under the same key: same answer as if it
            # had come first (a different report under that key is refused with 409).
            await _check_repeat(
                event_log, school, incident_id, report, had_time=had_time, notes=notes
            )
    log_after_answer(
        "encounter.reported",
        incident=incident_id,
        school=school.id,
        seq=appended.seq,
        duplicate=appended.duplicate,
    )
    return incident_id, not appended.duplicate


def while_acknowledged(work: Callable[[str], None], incident_id: str) -> None:
    """Run `work(incident_id)` two turns of the loop from now: the append about to be awaited
    has then handed its publish to the socket (nats-py writes from its flusher task, which the
    publish wakes for the next turn), so the work fills the wait for the PubAck instead of
    following it (an intake report's links: ~0.1 ms less between its report stored and its
    202). Only when it runs depends on this: what the work computes is used only once the
    append has returned. Outside a running loop, nothing is run."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_soon(loop.call_soon, work, incident_id)


def log_after_answer(event: str, **fields: object) -> None:
    """Log an info line once the request's task gives the loop back, which an intake
    request does once its answer is written: rendering and writing the line (~0.1 ms of a
    report's on a busy machine) is then not between the report stored and its 202. Called
    outside a running loop, it logs at once."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        log.info(event, **fields)
        return
    loop.call_soon(partial(log.info, event, **fields))


async def _sealer(
    notes: IntakeNotes | None, incident_id: str, *, now: datetime, likely_new: bool = False
) -> Sealer:
    if notes is None:
        # Fail closed: with nowhere to keep a key the notes cannot be stored (never in clear).
        raise Unavailable
    return await notes.sealer(incident_id, now=now, likely_new=likely_new)


def _has_note(raw: Any) -> bool:
    return isinstance(raw, dict) and bool(raw.get("notes") or raw.get("note"))


async def record_follow_up(
    event_log: EventLog,
    incident: IncidentState,
    actor: str,
    raw: Any,
    *,
    resolve: bool,
    reopen: bool = False,
    notes: IntakeNotes | None = None,
    idempotency_key: str | None = None,
    submission_id: str | None = None,
) -> tuple[str, bool]:
    """Record a staff update (or, with `resolve`, the all-clear; with `reopen`, the all-clear
    withdrawn); returns (the event id, whether it is new). An update under an
    `idempotency_key` (API) or a form's `submission_id` already recorded is answered with
    its id, recorded again nothing (no second round of emails)."""
    now = datetime.now(UTC)
    # An incident is resolved (and reopened) once per round: the all-clear's and the
    # reopening's ids derive from the incident and how often it was reopened, so a double
    # submit or two staff pressing at once record one and send one round of emails (the log
    # drops the second as a duplicate), while a later round gets its own. An update's id
    # derives from its key or submission: a repeat already folded in is found here, one in
    # flight at the same moment is dropped by the log (same id within its duplicate window).
    if reopen:
        event_id = incident.round_id("incident.reopened")
    elif resolve:
        event_id = incident.round_id("incident.resolved")
    else:
        event_id = update_id(
            incident.incident_id,
            raw,
            idempotency_key=idempotency_key,
            submission_id=submission_id,
        )
        if idempotency_key or submission_id:
            repeat = compare_update(incident, event_id, raw)
            if isinstance(repeat, Refused):
                refuse(repeat)
            if repeat == "same":
                log.info("update.repeated", incident=incident.incident_id, event_id=event_id)
                return event_id, False
    seal = None
    if _has_note(raw):
        with log_unreachable("notes.key_unavailable", incident=incident.incident_id):
            seal = await _sealer(notes, incident.incident_id, now=now)
    decision: Event | Refused
    if reopen:
        decision = decide_reopen(incident, raw, actor=actor, now=now, event_id=event_id, seal=seal)
    else:
        decision = decide_follow_up(
            incident, raw, resolve=resolve, actor=actor, now=now, event_id=event_id, seal=seal
        )
    if isinstance(decision, Refused):
        refuse(decision)
    appended = await record(event_log, decision)
    log.info(
        decision.type,
        incident=incident.incident_id,
        school=incident.school_id,
        duplicate=appended.duplicate,
    )
    return decision.id, not appended.duplicate
