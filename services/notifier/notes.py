"""Staff notes for an email: opened from their seal with the incident's key. Only emails
carry notes (chat rooms and webhooks are shared places), and a key that is gone or cannot be
reached never holds an alert back: the email goes without them, the status page has the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from schemas.events import Event, NotificationRequested
from services.domain.notes import open_notes, sealed_notes
from services.domain.sealing import NotesUnavailable, decode_key
from services.eventlog.notekeys import NoteKeys
from services.eventlog.retry import TRANSIENT_NATS_ERRORS
from services.runtime.logging import get_logger

log = get_logger("dooralert.notifier")


async def email_notes(
    req: NotificationRequested,
    events: list[Event],
    keys: Callable[[], Awaitable[NoteKeys]],
    *,
    retention: timedelta,
) -> str | None:
    """The latest staff notes (of the report, an update or the all-clear, up to the event the
    notification is about) in clear; None for other
    channels, when there are none, or when they cannot be opened (logged, never raised)."""
    if req.data.channel != "email":
        return None
    ids = [e.id for e in events]
    if req.data.cause_id in ids:
        # A follow-up shows the notes as they stood at its cause, not a later event's.
        events = events[: ids.index(req.data.cause_id) + 1]
    noted = [e for e in events if e.incident_id == req.incident_id and sealed_notes(e)]
    sealed = any((found := sealed_notes(e)) and found[1] is not None for e in noted)
    now = datetime.now(UTC)
    try:
        key = None
        if sealed:
            raw = await (await keys()).get(req.incident_id)
            key = decode_key(raw) if raw else None
        opened = [open_notes(e, key, now=now, retention=retention) for e in noted]
    except (NotesUnavailable, ValueError, *TRANSIENT_NATS_ERRORS) as exc:
        log.warning("notes.unavailable", incident=req.incident_id, error=type(exc).__name__)
        return None
    except Exception as exc:  # noqa: BLE001 - no bucket, no permission: the alert still goes
        log.error("notes.keys_unreachable", incident=req.incident_id, error=type(exc).__name__)
        return None
    return next((n for n in reversed(opened) if n), None)
