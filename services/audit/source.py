"""The audit's reads of DOORALERT_CHECKPOINTS and the online verify (I/O, through
services/eventlog)."""

from __future__ import annotations

from collections.abc import Sequence

from nats.js import JetStreamContext

from services.audit.note import Verifier
from services.audit.verify import LogVerifier, VerifyResult
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
    extra_notes: Sequence[str] = (),
) -> VerifyResult:
    """`audit verify` online: the checkpoints first, then every DOORALERT payload."""
    notes = await read_checkpoint_notes(js)
    lv = LogVerifier([*notes, *extra_notes], verifier, origin=origin)
    async for msgs in read_from(js):
        lv.feed((m.metadata.sequence.stream, m.data) for m in msgs)
    return lv.finish()
