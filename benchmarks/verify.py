"""How fast does `dooralert audit verify --export` check a large log, against raw hashing?

Builds a synthetic export (events.jsonl of N realistic-size payloads, a checkpoint every 1000
events signed by a throwaway key, manifest.json for leaf format v2) in a temp dir, then
measures in the same run:

- raw: SHA-256 of each payload alone (the floor any verifier pays)
- tree: the RFC 6962 leaf + node hashing over the same v2 leaves (subject ‖ LF ‖ payload)
- verify: `verify_export` end to end (read + JSON + base64 + v2 tree + checkpoint checks +
  each payload's type, school and incident against its subject)

    .venv/bin/python benchmarks/verify.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.audit.manifest import MANIFEST_FILE, manifest
from services.audit.merkle import CompactRange, leaf_input
from services.audit.note import Checkpoint, Signer, join_notes, sign_checkpoint
from services.audit.verify import verify_export


def payload(i: int) -> bytes:
    # ~560 bytes, shaped like a serialized encounter.reported event.
    return json.dumps(
        {
            "id": f"0190{i:028x}",
            "type": "encounter.reported",
            "schema_version": 1,
            "source": "intake",
            "incident_id": f"inc-{i:012d}",
            "school_id": "hamline",
            "occurred_at": "2026-01-01T12:00:00Z",
            "recorded_at": "2026-01-01T12:00:00.123456Z",
            "correlation_id": f"inc-{i:012d}",
            "causation_id": None,
            "actor": "staff-7f3a",
            "data": {
                "school_id": "hamline",
                "location": "Front entrance",
                "agency_stated": "ice",
                "agent_count": 2,
                "credentials_shown": True,
                "document": "administrative_warrant",
                "signed_by_judge": "no",
                "purpose": "unspecified",
                "entry": "kept_outside",
                "notes": "x" * 80,
            },
        }
    ).encode()


def subject(i: int) -> str:
    return f"dooralert.hamline.inc-{i:012d}.encounter.reported"


def build(directory: Path, n: int, signer: Signer, origin: str) -> list[bytes]:
    tree = CompactRange()
    notes = []
    payloads = []
    with (directory / "events.jsonl").open("w") as fh:
        for i in range(1, n + 1):
            data = payload(i)
            payloads.append(data)
            tree.append(leaf_input(subject(i), data))
            fh.write(
                json.dumps(
                    {
                        "seq": i,
                        "subject": subject(i),
                        "time": "2026-01-01T12:00:00.123456Z",
                        "headers": {"Nats-Msg-Id": f"0190{i:028x}"},
                        "data": base64.b64encode(data).decode(),
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
            if i % 1000 == 0 or i == n:
                notes.append(sign_checkpoint(signer, Checkpoint(origin, i, tree.root())))
    (directory / "checkpoints.txt").write_text(join_notes(notes))
    (directory / "log-key.pub").write_text(signer.verifier.line + "\n")
    meta = manifest(
        events=n, checkpoints=len(notes), last_seq=n, exported_at="2026-01-01T12:00:00Z"
    )
    (directory / MANIFEST_FILE).write_text(json.dumps(meta))
    return payloads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events
    origin = "dooralert.example/bench"
    signer = Signer.generate(origin)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        payloads = build(d, n, signer, origin)
        size_mb = os.path.getsize(d / "events.jsonl") / 1e6
        print(
            f"built {n} events ({size_mb:.0f} MB events.jsonl, {n // 1000 + 1} checkpoints) "
            f"in {time.perf_counter() - t0:.1f}s"
        )

        sha = hashlib.sha256
        t0 = time.perf_counter()
        for p in payloads:
            sha(p).digest()
        raw = time.perf_counter() - t0

        t0 = time.perf_counter()
        tree = CompactRange()
        for i, p in enumerate(payloads, 1):
            tree.append(leaf_input(subject(i), p))
        tree.root()
        tree_s = time.perf_counter() - t0
        del payloads

        t0 = time.perf_counter()
        result = verify_export(d, signer.verifier, origin=origin)
        verify_s = time.perf_counter() - t0
        assert result.ok, result.render()

    for name, s in (("raw sha256", raw), ("rfc6962 tree", tree_s), ("verify --export", verify_s)):
        print(f"{name:16} {s:6.2f}s  {n / s:>10,.0f} events/s  ({s / raw:.1f}x raw)")


if __name__ == "__main__":
    main()
