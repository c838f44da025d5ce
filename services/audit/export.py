"""`dooralert audit export --out DIR`: the log and its checkpoints, for offline verification.

Writes, each atomically (temp file then rename):

- `DIR/events.jsonl`: one JSON object per DOORALERT message, in stream order:
  `{"seq", "subject", "time" (RFC 3339 UTC), "headers": {str: str}, "data": base64 payload}`
- `DIR/checkpoints.txt`: every checkpoint note, in append order, separated by one blank line
- `DIR/manifest.json`: the leaf format (`{"leaf": "subject-lf-payload", "version": 2, …}`,
  see manifest.py), written last: a directory without it is not a finished v2 export
- `DIR/log-key.pub`: the verifier key line (from `--key`, else the last checkpoint's
  `Dooralert-Log-Key` header). It is a convenience: a verifier must get the key it trusts
  from somewhere other than the export.

Checkpoints are read before events, so every exported checkpoint is covered by the export.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from nats.js import JetStreamContext

from services.audit.ledger import H_KEY
from services.audit.manifest import MANIFEST_FILE, manifest
from services.audit.note import join_notes
from services.audit.source import CHECKPOINT_SUBJECTS
from services.audit.verify import CHECKPOINTS_FILE, EVENTS_FILE, KEY_FILE
from services.eventlog import CHECKPOINTS_STREAM, STREAM, read_from, stored


@dataclass(frozen=True)
class ExportSummary:
    events: int
    checkpoints: int
    key_line: str | None


def rfc3339(t: datetime) -> str:
    """`t` in UTC with microseconds and a `Z`, as the export writes times."""
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_line(seq: int, subject: str, time: datetime, headers: dict[str, str], data: bytes) -> str:
    """One `events.jsonl` line (see the module docstring)."""
    return json.dumps(
        {
            "seq": seq,
            "subject": subject,
            "time": rfc3339(time),
            "headers": headers,
            "data": base64.b64encode(data).decode(),
        },
        separators=(",", ":"),
    )


def _replace(path: Path, write: Callable[[TextIO], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        write(fh)
    tmp.replace(path)


async def export(
    js: JetStreamContext,
    out: Path,
    *,
    key_line: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the export; `progress(done, total)` is called after each batch of events."""
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a one-off CLI command's loop
    notes: list[str] = []
    header_key: str | None = None
    async for msgs in read_from(js, stream=CHECKPOINTS_STREAM, subject=CHECKPOINT_SUBJECTS):
        for m in msgs:
            notes.append(m.data.decode("utf-8", errors="replace"))
            header_key = (m.headers or {}).get(H_KEY, header_key)

    (out / MANIFEST_FILE).unlink(missing_ok=True)  # an export cut short has no manifest
    count = 0
    last_seq = 0
    total = (await js.stream_info(STREAM)).state.last_seq
    tmp = out / f".{EVENTS_FILE}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        async for msgs in read_from(js):
            lines = [
                event_line(sm.seq, sm.subject, sm.time, sm.headers, sm.data)
                for sm in map(stored, msgs)
            ]
            fh.write("\n".join(lines) + "\n")
            count += len(lines)
            last_seq = msgs[-1].metadata.sequence.stream
            if progress is not None:
                progress(count, max(total, count))
    tmp.replace(out / EVENTS_FILE)

    _replace(out / CHECKPOINTS_FILE, lambda fh: fh.write(join_notes(notes)))
    key = key_line or header_key
    if key:
        _replace(out / KEY_FILE, lambda fh: fh.write(key + "\n"))
    meta = manifest(
        events=count,
        checkpoints=len(notes),
        last_seq=last_seq,
        exported_at=rfc3339(datetime.now(UTC)),
    )
    _replace(out / MANIFEST_FILE, lambda fh: fh.write(json.dumps(meta, indent=1) + "\n"))
    return ExportSummary(events=count, checkpoints=len(notes), key_line=key)
