"""An event is what its subject says (DESIGN §4), checked fast for `audit verify` (pure).

`dooralert.<school_id>.<incident_id>.<type>`: the payload's `school_id`, `incident_id` and
`type` must equal the subject's. The payload is decoded with `json.loads`, as every reader
decodes it (`schemas.events.parse_event`), so a duplicated key resolves the same way here as
in a fold; nothing else of the payload is validated, which keeps a million events in seconds.
"""

from __future__ import annotations

import json

from services.eventlog.contract import SUBJECT_PREFIX

_loads = json.loads
_PREFIX = SUBJECT_PREFIX


def subject_problem(subject: str, payload: bytes) -> str | None:
    """Why this payload is not the event its subject names, or None when it is."""
    parts = subject.split(".", 3)
    if len(parts) != 4 or parts[0] != _PREFIX:
        return f"subject {subject!r} is not {_PREFIX}.<school>.<incident>.<type>"
    try:
        obj = _loads(payload)
    except (ValueError, RecursionError) as exc:  # not UTF-8; nested past the recursion limit
        return f"payload on {subject} is not a JSON event ({str(exc)[:80]})"
    if not isinstance(obj, dict):
        return f"payload on {subject} is not a JSON object"
    _, school, incident, kind = parts
    if (
        obj.get("type") == kind
        and obj.get("school_id") == school
        and obj.get("incident_id") == incident
    ):
        return None
    said = f"{obj.get('type')!r} of incident {obj.get('incident_id')!r} at {obj.get('school_id')!r}"
    return f"subject {subject} carries {said[:200]}: the event was moved to another subject"
