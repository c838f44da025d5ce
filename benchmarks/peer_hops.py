"""Where a sequential sample's time goes, hop by hop (benchmarks/peer.py prints it).

Every timestamp is brought onto CLOCK_MONOTONIC, the clock of the benchmark's POST times and of
the SMTP sink's accept times: the event log's stored times (JetStream's, wall clock) and the
events' `recorded_at` (the service's wall clock when it built the event) are shifted by
`time.time() - time.monotonic()` taken once in the benchmark (one machine, one kernel).

The hops of one report, in order:

    POST sent -> report stored                 intake: HTTP, auth, parse, seal, publish
    report stored -> 202 received              intake: after the PubAck, back to the client
    report stored -> router built decision     delivery to the router, fetch, decode, fold
    decision built -> decision stored          the router's first publish round trip
    decision stored -> last request stored     the pipelined notification.requested
    last request stored -> 4th email accepted  the notifier: fetch, plan, render, SMTP
    4th email accepted -> last sent stored     the notifier's records (after the measure)
    POST sent -> 4th email accepted            the measure itself
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import nats

from benchmarks import peer_parts as parts
from benchmarks import pipeline as pl
from schemas.events import EventDecodeError, parse_stored
from services.eventlog import SUBJECT_PREFIX, StoredMessage, connection_options, read_messages

HOPS = (
    ("POST sent → report stored", "post", "reported"),
    ("report stored → 202 received", "reported", "response"),
    ("report stored → router built decision", "reported", "decided_built"),
    ("decision built → decision stored", "decided_built", "decided"),
    ("decision stored → last request stored", "decided", "requested_last"),
    ("last request stored → 4th email accepted", "requested_last", "email_last"),
    ("  first request stored → 1st email accepted", "requested_first", "email_first"),
    ("4th email accepted → last sent stored", "email_last", "sent_last"),
    ("POST sent → 4th email accepted (the measure)", "post", "email_last"),
)


@dataclass
class Sample:
    """One sequential dooralert sample, in monotonic seconds."""

    incident: str
    post: float
    response: float
    emails: list[float] = field(default_factory=list)


async def dooralert_sample(
    client: httpx.AsyncClient, sink: parts.Sink, school: str, key: str, i: int
) -> Sample:
    """Report -> all four emails accepted, keeping every time on the way."""
    t0 = time.monotonic()
    incident = await parts.post_report(client, school, key, i)
    t1 = time.monotonic()
    if not await sink.wait([incident], parts.EMAILS, 30):
        raise RuntimeError(f"incident {incident}: {sink.count(incident)} emails in 30s")
    return Sample(incident, t0, t1, sorted(sink.times[incident])[: parts.EMAILS])


def _mono(t: datetime, offset: float) -> float:
    return t.timestamp() - offset


def sample_points(s: Sample, msgs: list[StoredMessage], offset: float) -> dict[str, float] | None:
    """The named instants of one sample (monotonic seconds), None if a stage is missing."""
    stored: dict[str, list[float]] = defaultdict(list)
    built: dict[str, list[float]] = defaultdict(list)
    for m in msgs:
        etype = ".".join(m.subject.split(".")[3:])
        stored[etype].append(_mono(m.time, offset))
        try:
            built[etype].append(_mono(parse_stored(m.data, m.subject).recorded_at, offset))
        except EventDecodeError:
            continue
    need = ("encounter.reported", "escalation.decided", "notification.requested")
    if any(not stored[k] for k in need) or len(s.emails) < parts.EMAILS:
        return None
    points = {
        "post": s.post,
        "response": s.response,
        "reported": min(stored["encounter.reported"]),
        "decided_built": min(built["escalation.decided"]),
        "decided": min(stored["escalation.decided"]),
        "requested_first": min(stored["notification.requested"]),
        "requested_last": max(stored["notification.requested"]),
        "email_first": s.emails[0],
        "email_last": s.emails[parts.EMAILS - 1],
    }
    if stored["notification.sent"]:
        points["sent_last"] = max(stored["notification.sent"])
    return points


async def hop_breakdown(admin_url: str, samples: list[Sample], offset: float) -> dict[str, Any]:
    """p50/p99 per hop over the samples, read back from the log as the admin user."""
    if not samples:
        return {}
    wanted = {s.incident for s in samples}
    nc = await nats.connect(**connection_options(admin_url, name="bench-hops"))
    try:
        msgs = await read_messages(nc.jetstream(), f"{SUBJECT_PREFIX}.>")
    finally:
        await nc.close()
    by_incident: dict[str, list[StoredMessage]] = defaultdict(list)
    for m in msgs:
        parts_ = m.subject.split(".")
        if len(parts_) > 3 and parts_[2] in wanted:
            by_incident[parts_[2]].append(m)
    hops: dict[str, list[float]] = {name: [] for name, _, _ in HOPS}
    for s in samples:
        points = sample_points(s, by_incident.get(s.incident, []), offset)
        if points is None:
            continue
        for name, a, b in HOPS:
            if a in points and b in points:
                hops[name].append(points[b] - points[a])
    return {name: pl.summary_ms(v) for name, v in hops.items() if v}


def print_hops(hops: dict[str, Any]) -> None:
    """The breakdown as a table (ms; a negative hop means two clocks' jitter, not time)."""
    if not hops:
        return
    print("")
    print("dooralert, per hop over the sequential samples (ms):")
    print("| hop | p50 | p99 |")
    print("|---|---|---|")
    for name, s in hops.items():
        print(f"| {name} | {s['p50']:.1f} | {s['p99']:.1f} |")
