"""`DIR/manifest.json` of an export: which leaf format its checkpoints commit to (DESIGN §6).

`{"leaf": "subject-lf-payload", "version": 2, "hash": "rfc6962-sha256", "events": N,
"checkpoints": M, "first_seq": 1, "last_seq": N, "exported_at": RFC 3339}`. A verifier must
know the leaf format before it hashes anything: the same log hashed as v1 (payload alone) or
v2 (subject ‖ LF ‖ payload) gives different roots, and only v2 binds an event to its subject.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.audit.merkle import LEAF_FORMAT, LEAF_VERSION

MANIFEST_FILE = "manifest.json"
HASH = "rfc6962-sha256"


def manifest(*, events: int, checkpoints: int, last_seq: int, exported_at: str) -> dict[str, Any]:
    """The manifest of an export of `events` messages (seq 1..last_seq)."""
    return {
        "leaf": LEAF_FORMAT,
        "version": LEAF_VERSION,
        "hash": HASH,
        "events": events,
        "checkpoints": checkpoints,
        "first_seq": 1 if events else 0,
        "last_seq": last_seq,
        "exported_at": exported_at,
    }


def check_manifest(directory: Path) -> dict[str, Any]:
    """The manifest if this verifier reads its leaf format; ValueError saying why not.

    An export without one was written before format v2 (leaves over payloads alone): it is
    refused rather than verified, because a v1 export passes with any event moved to another
    subject; export the log again with this version.
    """
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(
            f"{directory} has no {MANIFEST_FILE}: it is a leaf-format v1 export (leaves over the "
            "payload alone, which do not bind an event to its subject) and is refused; export "
            "the log again with `dooralert audit export`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    leaf, version = data.get("leaf"), data.get("version")
    if (leaf, version) != (LEAF_FORMAT, LEAF_VERSION) or data.get("hash", HASH) != HASH:
        raise ValueError(
            f"{path} says leaf {leaf!r} version {version!r}, hash {data.get('hash')!r}; this "
            f"verifier reads leaf {LEAF_FORMAT!r} version {LEAF_VERSION} ({HASH}) only"
        )
    return data
