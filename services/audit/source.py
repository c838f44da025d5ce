"""The audit's reads of DOORALERT_CHECKPOINTS and the online verify (I/O, through
services/eventlog)."""

from __future__ import annotations

from collections.abc import Sequence

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.audit.note import Verifier
from services.audit.verify import Finding, LogVerifier, Named, VerifyResult
from services.eventlog import CHECKPOINTS_STREAM, read_from

CHECKPOINT_SUBJECTS = "dooralert_checkpoints.>"


async def read_checkpoint_notes(js: JetStreamContext) -> list[str]:
    """Every checkpoint note in DOORALERT_CHECKPOINTS, in the order they were appended."""
    notes: list[str] = []
    async for msgs in read_from(js, stream=CHECKPOINTS_STREAM, subject=CHECKPOINT_SUBJECTS):
        notes.extend(m.data.decode("utf-8", errors="replace") for m in msgs)
    return notes


async def verify_stream(
    js: JetStreamContext,
    verifier: Verifier,
    *,
    origin: str | None = None,
    trusted: Sequence[Named] = (),
) -> VerifyResult:
    """`audit verify` online: the checkpoints first, then every DOORALERT message."""
    try:
        await js.stream_info(CHECKPOINTS_STREAM)
        missing = False
    except NotFoundError:
        missing = True
    notes = [] if missing else await read_checkpoint_notes(js)
    lv = LogVerifier(notes, verifier, origin=origin, trusted=trusted)
    if missing:
        lv.result.errors.append(
            Finding(0, f"stream {CHECKPOINTS_STREAM} does not exist: the checkpoints were deleted")
        )
    async for msgs in read_from(js):
        lv.feed((m.metadata.sequence.stream, m.subject, m.data) for m in msgs)
    return lv.finish()
