"""Hostile payloads on every subject a consumer reads, through a real nats-server.

Each one is set aside (README "No silent loss, no forged acknowledgement"): the router, its
follow-ups consumer and the notifier append one `message.dead_lettered` per message and
terminate it; an unreadable fired timer is logged and terminated (`timer.unreadable`: timers
are not events). None is retried, no consumer stops (a real report still sends its 4
emails, and an update to it, its report subject poisoned too, 4 more), intake's incident
read folds none of them in, the ledger's tree covers every message, and `audit replay` and
`audit verify` (online and from an export) read the log and name them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from schemas.events import (
    CURRENT_VERSIONS,
    Event,
    IncidentReopened,
    SealedReopenedData,
    new_event_id,
    parse_event,
    serialize_event,
)
from services.audit.export import export
from services.audit.ledger import Ledger
from services.audit.note import Signer
from services.audit.replay import replay
from services.audit.report import build_report, render_html, render_markdown
from services.audit.source import verify_stream
from services.audit.verify import verify_export
from services.cli.audit import _incident_log, _readable
from services.eventlog import STREAM, TIMER_FIRED_PREFIX, TIMERS_STREAM, read_messages
from tests.support import HAMLINE_KEY, REPO, eventually, report, utcnow

ORIGIN = "dooralert.example/poison-sweep"
SCHOOL = "hamline"
BIG = "1" * 5000  # past Python's 4,300-digit limit for int <-> str
DEEP = b"[" * 100_000 + b"]" * 100_000
LARGE = "x" * 900_000  # under nats-server's default max_payload (1 MB)

# Subject type -> the durable consumer that reads it (None: read by the ledger, replay and
# intake's incident reads only).
CONSUMERS: dict[str, str | None] = {
    "encounter.reported": "router",
    "notification.requested": "notifier",
    "encounter.updated": "router-followups",
    "incident.resolved": "router-followups",
    "incident.reopened": "router-followups",
    "notification.failed": "router-followups",
    "incident.acknowledged": None,
    "escalation.decided": None,
}


def _templates() -> dict[str, Event]:
    """A valid event of each type (the v1 fixtures, lifted to their current versions)."""
    path = REPO / "tests" / "fixtures" / "events-v1" / "events.jsonl"
    found = {}
    for line in path.read_text().splitlines():
        event = parse_event(line)
        found[event.type] = event
    now = utcnow()
    found["incident.reopened"] = IncidentReopened(
        id=new_event_id(),
        source="intake",
        incident_id="x",
        school_id=SCHOOL,
        occurred_at=now,
        recorded_at=now,
        correlation_id="x",
        actor="staff-test",
        data=SealedReopenedData(),
    )
    return found


TEMPLATES = _templates()


def valid(kind: str, incident: str, *, school: str = SCHOOL) -> dict[str, Any]:
    """A valid event of `kind` about `incident` as a JSON dict."""
    event = TEMPLATES[kind].model_copy(
        update={"id": new_event_id(), "incident_id": incident, "school_id": school}
    )
    return dict(json.loads(serialize_event(event)))


def _dumps_with(doc: dict[str, Any], literal: str) -> bytes:
    """`doc` as JSON with its "@@" string replaced by `literal` (raw JSON)."""
    return json.dumps(doc).replace('"@@"', literal).encode()


def _big_int(kind: str, incident: str) -> bytes:
    return _dumps_with({**valid(kind, incident), "schema_version": "@@"}, BIG)


def _big_float(kind: str, incident: str) -> bytes:
    doc = valid("notification.failed", incident)
    doc["type"] = kind
    doc["data"]["next_attempt_in_seconds"] = "@@"
    return _dumps_with(doc, BIG)


def _other_type(kind: str, incident: str) -> bytes:
    other = "notification.sent" if kind == "incident.acknowledged" else "incident.acknowledged"
    return json.dumps(valid(other, incident)).encode()


def _broken_upcast(kind: str, incident: str) -> bytes:
    doc = valid(kind, incident)
    if CURRENT_VERSIONS[kind] > 1:
        # Its upcaster runs and meets data it cannot lift.
        return json.dumps({**doc, "schema_version": 1, "data": "not an object"}).encode()
    return json.dumps({**doc, "schema_version": 0}).encode()  # no upcaster from v0


def _deep_data(kind: str, incident: str) -> bytes:
    return _dumps_with({**valid(kind, incident), "data": "@@"}, DEEP.decode())


def _large(kind: str, incident: str) -> bytes:
    doc = valid(kind, incident)
    doc["data"]["padding"] = LARGE
    return json.dumps(doc).encode()


PAYLOADS: dict[str, Callable[[str, str], bytes]] = {
    "not-utf8": lambda k, i: b"\xff\xfe\x00\x80 not utf-8",
    "not-json": lambda k, i: b"{not json",
    "not-object": lambda k, i: b"[1, 2, 3]",
    "deep": lambda k, i: DEEP,
    "deep-data": _deep_data,
    "big-int": _big_int,
    "big-float": _big_float,
    "type-list": lambda k, i: json.dumps({**valid(k, i), "type": [1]}).encode(),
    "data-list": lambda k, i: json.dumps({**valid(k, i), "data": [1, 2]}).encode(),
    "data-string": lambda k, i: json.dumps({**valid(k, i), "data": "x"}).encode(),
    "other-type": _other_type,
    "other-incident": lambda k, i: json.dumps(valid(k, i + "-elsewhere")).encode(),
    "other-school": lambda k, i: json.dumps(valid(k, i, school="lincoln")).encode(),
    "broken-upcast": _broken_upcast,
    "newer-version": lambda k, i: json.dumps(
        {**valid(k, i), "schema_version": CURRENT_VERSIONS[k] + 1}
    ).encode(),
    "large": _large,
}

TIMER_PAYLOADS: list[bytes] = [
    b"\xff\xfe not utf-8",
    b"{not json",
    b"[1, 2, 3]",
    b'"a string"',
    DEEP,
    b'{"school_id": "hamline", "incident_id": "t", "tier": ' + BIG.encode() + b"}",
    b'{"school_id": "hamline", "incident_id": "t", "tier": 1e400}',
    b'{"school_id": "hamline", "incident_id": "t", "tier": [1]}',
    b'{"school_id": "hamline", "incident_id": "t", "tier": "one"}',
    b'{"school_id": 7, "incident_id": "t", "tier": 1}',
    json.dumps({"school_id": "hamline", "incident_id": "t", "tier": 1, "pad": LARGE}).encode(),
]


async def _last_seq(js: JetStreamContext, stream: str = STREAM) -> int:
    return int((await js.stream_info(stream)).state.last_seq)


async def test_every_hostile_payload_is_set_aside_and_nothing_stops(  # type: ignore[no-untyped-def]
    pipeline, smtp, tmp_path: Path
) -> None:
    js: JetStreamContext = pipeline.js  # type: ignore[assignment]
    signer = Signer.generate(ORIGIN)
    ledger = Ledger(js, signer, origin=ORIGIN, every=1000, seconds=0.5)
    stop = asyncio.Event()
    ledger_task = asyncio.create_task(ledger.run(stop))
    try:
        # seq -> (subject, the consumer expected to set it aside)
        published: dict[int, tuple[str, str | None]] = {}
        for name, make in PAYLOADS.items():
            for kind, consumer in CONSUMERS.items():
                incident = f"p-{name}-{kind.replace('.', '-')}"
                subject = f"dooralert.{SCHOOL}.{incident}.{kind}"
                ack = await js.publish(subject, make(kind, incident), stream=STREAM)
                published[ack.seq] = (subject, consumer)
        for n, payload in enumerate(TIMER_PAYLOADS):
            subject = f"{TIMER_FIRED_PREFIX}.{SCHOOL}.poison-timer-{n}.1"
            await js.publish(subject, payload, stream=TIMERS_STREAM)

        # The consumers keep going: a real report after them is sent to its four recipients.
        resp = await pipeline.report(report(school_id=SCHOOL))
        assert resp.status_code == 202, resp.text
        incident_id = resp.json()["incident_id"]
        await eventually(lambda: len(smtp.received) == 4, timeout=20)

        # The same onto the real incident's subjects, which intake's incident reads take in.
        for make in PAYLOADS.values():
            for kind in CONSUMERS:
                subject = f"dooralert.{SCHOOL}.{incident_id}.{kind}"
                ack = await js.publish(subject, make(kind, incident_id), stream=STREAM)
                published[ack.seq] = (subject, CONSUMERS[kind])

        # Every message on a consumer's subject is set aside once, by that consumer.
        expected = {(seq, c) for seq, (_, c) in published.items() if c is not None}

        async def dead_letters() -> set[tuple[int, str]] | None:
            msgs = await read_messages(js, "dooralert.*.*.message.dead_lettered")
            got = {
                (d["stream_sequence"], d["consumer"])
                for d in (json.loads(m.data)["data"] for m in msgs)
            }
            return got if got >= expected else None

        got = await eventually(dead_letters, timeout=20)
        assert got == expected

        # Nothing is left to be retried: each consumer acknowledged (or terminated) all.
        async def settled() -> dict[str, tuple[int, int, int]] | None:
            left = {}
            for stream, durable in (
                (STREAM, "router"),
                (STREAM, "router-followups"),
                (STREAM, "notifier"),
                (TIMERS_STREAM, "router-timers"),
            ):
                info = await js.consumer_info(stream, durable)
                counts = (info.num_pending, info.num_ack_pending, info.num_redelivered)
                if any(counts):
                    left[durable] = counts
            return left

        left: dict[str, tuple[int, int, int]] | None = None

        async def none_left() -> bool:
            nonlocal left
            left = await settled()
            return left == {}

        try:
            await eventually(none_left, timeout=10)
        except AssertionError:
            raise AssertionError(f"(pending, ack pending, redelivered) left: {left}") from None

        # The report is still read behind what was set aside on its subject: an update reaches
        # the four again.
        resp = await pipeline.client.post(
            f"/api/v1/incidents/{incident_id}/updates",
            json={"entry": "left"},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert resp.status_code == 202, resp.text
        await eventually(lambda: len(smtp.received) == 8, timeout=20)

        # Intake still reads the real incident, none of what was set aside folded in.
        async def all_sent() -> dict[str, Any] | None:
            state: dict[str, Any] = await pipeline.incident(incident_id)
            notes = state["notifications"]
            return state if len(notes) == 8 and all(n["status"] == "sent" for n in notes) else None

        state = await eventually(all_sent)
        assert not state["acknowledgements"] and state["report"]["entry"] == "left"

        # The ledger covers every message, poison included.
        last = await _last_seq(js)
        await eventually(lambda: ledger.tree.size >= last, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(ledger_task, 20)
    assert ledger.last is not None and ledger.last.size >= last

    # `audit replay` reads the log and names every unreadable or set-aside message.
    messages = await read_messages(js)
    text, code = replay(messages, incident=None, as_json=False)
    assert code == 0
    for seq, (subject, _) in published.items():
        assert f"seq {seq} ({subject}): " in text, seq
    as_json, code = replay(messages, incident=None, as_json=True)
    assert code == 0 and incident_id in as_json

    # `audit report` on the real incident names every one among its problems.
    msgs, notes, _, key = await _incident_log(js, incident_id)
    pairs, unreadable = _readable(msgs)
    assert len(unreadable) == len(PAYLOADS) * len(CONSUMERS)
    built = build_report(
        pairs,
        now=datetime.now(UTC),
        checkpoints=notes,
        verifier=signer.verifier,
        problems=[f"unreadable message {u}" for u in unreadable],
        notes_key=key,
    )
    assert render_markdown(built) and render_html(built)

    # `audit verify` hashes the whole log; a moved event fails it, as the README says.
    result = await verify_stream(js, signer.verifier, origin=ORIGIN)
    assert result.events == await _last_seq(js)
    assert not result.ok

    # And offline, from an export.
    summary = await export(js, tmp_path / "export")
    assert summary.events == result.events
    offline = verify_export(tmp_path / "export", signer.verifier, origin=ORIGIN)
    assert offline.events == result.events and not offline.ok
