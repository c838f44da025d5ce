"""Reading DOORALERT and DOORALERT_CHECKPOINTS for the ledger, export and online verify (I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.audit.note import Verifier
from services.audit.verify import LogVerifier, VerifyResult
from services.eventlog import CHECKPOINTS_STREAM, STREAM, consume_batches

CHECKPOINT_SUBJECTS = "dooralert_checkpoints.>"


def reader_config(start_seq: int, *, inactive_threshold: float = 30.0) -> ConsumerConfig:
    """An ephemeral, unacknowledged, in-memory consumer from `start_seq` on.

    Ephemeral on purpose: where the ledger stands is recorded in its signed checkpoints, so
    there is no server-side cursor that could disagree with them.
    """
    return ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 1 else DeliverPolicy.ALL,
        opt_start_seq=start_seq if start_seq > 1 else None,
        inactive_threshold=inactive_threshold,
        mem_storage=True,
    )


async def iter_batches(
    js: JetStreamContext,
    *,
    stream: str = STREAM,
    subject: str = "dooralert.>",
    start_seq: int = 1,
    batch: int = 1000,
) -> AsyncIterator[list[Msg]]:
    """Every message stored now from `start_seq` on, in stream order, in batches."""
    async for msgs in consume_batches(
        js, subject, config=reader_config(start_seq), stream=stream, batch=batch
    ):
        yield msgs


async def read_checkpoint_notes(js: JetStreamContext) -> list[str]:
    """Every checkpoint note in DOORALERT_CHECKPOINTS, in the order they were appended."""
    notes: list[str] = []
    async for msgs in iter_batches(js, stream=CHECKPOINTS_STREAM, subject=CHECKPOINT_SUBJECTS):
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
    async for msgs in iter_batches(js):
        lv.feed((m.metadata.sequence.stream, m.data) for m in msgs)
    return lv.finish()
