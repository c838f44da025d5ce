"""`dooralert audit forget`: destroy an incident's notes key, so its sealed notes are gone
everywhere (crypto-shredding), and record that as `notes.forgotten`. The log is untouched, so
the ledger still verifies. Also the notes-key look-up the audit commands share."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.support import fail, operate

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from services.domain.sealing import DataKey
    from services.eventlog import StoredMessage


async def read_notes_key(js: JetStreamContext, incident: str) -> DataKey | None:
    """The incident's notes key, or None (forgotten, expired, never made, or this user may not
    read the bucket: the report then shows the notes as unavailable, never fails)."""
    from nats.js.errors import APIError, BucketNotFoundError

    from services.domain.sealing import decode_key
    from services.eventlog import TRANSIENT_NATS_ERRORS, JetStreamNoteKeys

    try:
        # A user that may not read the bucket sees its requests time out (NATS denies by
        # silence): a short retry, then "notes unavailable", never a traceback per incident.
        keys = await JetStreamNoteKeys.open(js, retry_for=2.0)
        raw = await keys.get(incident)
    except (BucketNotFoundError, APIError, *TRANSIENT_NATS_ERRORS):
        return None
    if raw is None:
        return None
    try:
        return decode_key(raw)
    except ValueError:
        return None


async def replay_log(
    js: JetStreamContext, subject: str
) -> tuple[list[StoredMessage], dict[str, DataKey | None]]:
    """The messages on `subject` and the notes key of each incident they are about."""
    from services.eventlog import read_messages

    messages = await read_messages(js, subject)
    incidents = {m.subject.split(".")[2] for m in messages if m.subject.count(".") >= 3}
    return messages, {i: await read_notes_key(js, i) for i in sorted(incidents)}


def audit_forget(
    incident: Annotated[str, typer.Option(help="the incident whose notes are forgotten")],
    reason: Annotated[
        str | None, typer.Option(help="why (recorded in the log: no personal data)")
    ] = None,
) -> None:
    """Forget an incident's staff notes for good: destroys its notes key and appends
    `notes.forgotten`. Needs the admin NATS user. The log and its ledger are unchanged."""
    from schemas.report import TOKEN_PATTERN

    if not re.fullmatch(TOKEN_PATTERN, incident):
        fail(f"--incident: {incident!r} is not an incident id")
    if reason is not None and len(reason) > 200:
        fail("--reason: at most 200 characters")

    async def work(js: JetStreamContext) -> str:
        return await _forget(js, incident, reason)

    operate("dooralert-forget", work)


async def _forget(js: JetStreamContext, incident: str, reason: str | None) -> str:
    from schemas.envelope import originating
    from schemas.events import NotesForgotten, NotesForgottenData, new_event_id
    from services.eventlog import JetStreamNoteKeys, publish_event, read_incident

    events = await read_incident(js, incident)
    if not events:
        raise LookupError(f"no incident {incident!r} in the log")
    had_key = await (await JetStreamNoteKeys.open(js)).forget(incident)
    # Recorded after the key is gone: a crash in between leaves the notes forgotten and
    # unrecorded (run it again), never recorded and still readable.
    event = originating(
        NotesForgotten,
        NotesForgottenData(reason=reason),
        id=new_event_id(),
        source="operator",
        incident_id=incident,
        school_id=events[0].school_id,
        now=datetime.now(UTC),
        actor="operator",
    )
    await publish_event(js, event)
    what = "destroyed its notes key" if had_key else "it had no notes key left"
    return f"forgot the notes of incident {incident} ({what}); recorded notes.forgotten"
