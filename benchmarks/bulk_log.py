"""A big DOORALERT log, fast, for benchmarks/flat_log.py: real incidents cloned.

The templates are incidents the running services recorded (a report, the router's decision,
notification requests, the notifier's sends, updates, all-clears and their emails), read back
from the log, plus an acknowledgement (`incident.acknowledged` via a link, as the ack page
records it) inserted after the first alert sent. Each clone replaces every id in them (the
incident, event, notification and correlation ids: all UUIDs) with fresh ones and moves it to
another school, so every cloned event is valid per schemas/events.py and is what its subject
says. Sealed notes stay sealed under the template incident's key: unreadable, as forgotten
notes are.

They are published pipelined (thousands in flight, acknowledgements counted on one inbox). The
services' durable consumers are then recreated past them (`skip_durables`), as if the services
had handled the million already: a log that big is years of incidents, long since routed and
sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from schemas.envelope import originating
from schemas.events import (
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    NotificationRequested,
    parse_stored,
    serialize_event,
    subject_for,
)
from services.eventlog import STREAM, read_messages
from services.eventlog.contract import consumer_configs
from services.eventlog.provision import restored_config

SLOT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|school-\d{3}")


@dataclass
class Template:
    """One incident's events as (subject, payload) split around its ids: literal pieces and,
    between them, the index of the id that goes there (0 is the school)."""

    pieces: list[tuple[list[str], list[int]]]
    ids: int  # distinct UUIDs


def _split(text: str, slots: dict[str, int]) -> tuple[list[str], list[int]]:
    lits, idx, at = [], [], 0
    for m in SLOT.finditer(text):
        lits.append(text[at : m.start()])
        idx.append(slots.setdefault(m.group(0), len(slots)) if m.group(0)[0] != "s" else 0)
        at = m.end()
    lits.append(text[at:])
    return lits, idx


def template(events: list[tuple[str, str]]) -> Template:
    """A template of one incident's (subject, payload) pairs."""
    slots: dict[str, int] = {"": 0}  # index 0: the school
    pieces = []
    for subject, payload in events:
        pieces.append(_split(subject, slots))
        pieces.append(_split(payload, slots))
    return Template(pieces, len(slots))


def with_ack(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`events` with an acknowledgement of the first alert, after its first send."""
    first = next(
        (parse_stored(p, s) for s, p in events if s.endswith(".notification.requested")), None
    )
    sent_at = next((i for i, (s, _) in enumerate(events) if s.endswith(".sent")), None)
    if not isinstance(first, NotificationRequested) or sent_at is None:
        return events
    d = first.data
    ack = originating(
        IncidentAcknowledged,
        IncidentAcknowledgedData(
            role=d.role, contact_id=d.contact_id, notification_id=d.notification_id, via="link"
        ),
        id=_uuid_like(),
        source="intake",
        incident_id=first.incident_id,
        school_id=first.school_id,
        now=datetime.now(UTC),
        actor=f"contact:{d.contact_id}",
    )
    pair = (subject_for(ack), serialize_event(ack).decode())
    return [*events[: sent_at + 1], pair, *events[sent_at + 1 :]]


def _uuid_like() -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def read_templates(js: JetStreamContext, incidents: list[str]) -> list[Template]:
    """The given incidents' events (in log order) as templates, half of them acknowledged."""
    by_incident: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for m in await read_messages(js, "dooralert.>"):
        incident = m.subject.split(".")[2]
        if incident in incidents:
            by_incident[incident].append((m.subject, m.data.decode()))
    chosen = [by_incident[i] for i in incidents if by_incident.get(i)]
    return [template(with_ack(ev) if n % 2 == 0 else ev) for n, ev in enumerate(chosen)]


def clones(
    templates: list[Template], schools: list[str], count: int
) -> Iterator[tuple[str, bytes]]:
    """`count` events: the templates in turn, each clone with fresh ids at the next school."""
    run = secrets.token_hex(4)
    made = 0
    for n in itertools.count():
        t = templates[n % len(templates)]
        school = schools[n % len(schools)]
        # UUID-shaped, unique per run, clone and slot: cheaper than uuid4 a million times.
        ids = [school] + [f"{run}-{k:04x}-7000-8000-{n:012x}" for k in range(1, t.ids)]
        for i in range(0, len(t.pieces), 2):
            yield _fill(t.pieces[i], ids), _fill(t.pieces[i + 1], ids).encode()
            made += 1
            if made >= count:
                return


def check_clones(templates: list[Template], schools: list[str]) -> int:
    """Parse one clone of each template as every reader does (schemas/events.py, bound to its
    subject); raises on the first that is not a valid event. How many were checked."""
    n = sum(len(t.pieces) // 2 for t in templates)
    for subject, payload in clones(templates, schools, n):
        parse_stored(payload, subject)
    return n


def _fill(piece: tuple[list[str], list[int]], ids: list[str]) -> str:
    lits, idx = piece
    out = [lits[0]]
    for k, lit in zip(idx, lits[1:], strict=True):
        out.append(ids[k])
        out.append(lit)
    return "".join(out)


async def publish(
    url: str,
    events: Iterator[tuple[str, bytes]],
    *,
    window: int = 20_000,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[int, float]:
    """Publish every event, pipelined: each a core publish whose reply subject is one inbox
    where JetStream's acknowledgements are counted (up to `window` unacknowledged), which is
    what publish_async does without a future per message. (count, seconds)."""
    nc = await nats.connect(url, name="bench-bulk", pending_size=64 * 1024 * 1024)
    inbox = nc.new_inbox()
    acked = 0
    errors: list[bytes] = []
    more = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acked
        acked += 1
        if b'"error"' in msg.data:
            errors.append(msg.data)
        if sent - acked < window // 2:
            more.set()

    sub = await nc.subscribe(f"{inbox}.*", cb=on_ack, pending_msgs_limit=4 * window)
    t0 = time.monotonic()
    sent = 0
    try:
        for subject, payload in events:
            await nc.publish(subject, payload, reply=f"{inbox}.{sent % 1000}")
            sent += 1
            if sent - acked >= window:
                more.clear()
                await nc.flush()
                await asyncio.wait_for(more.wait(), 60)
            if errors:
                raise RuntimeError(f"publish refused after {sent} events: {errors[0]!r}")
            if progress and sent % 100_000 == 0:
                progress(sent, time.monotonic() - t0)
        await nc.flush()
        deadline = time.monotonic() + 120
        while acked < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if errors or acked < sent:
            raise RuntimeError(
                f"{sent - acked} unacknowledged, {len(errors)} refused: {errors[:1]}"
            )
        return sent, time.monotonic() - t0
    finally:
        await sub.unsubscribe()
        await nc.close()


async def skip_durables(url: str) -> list[str]:
    """Each service's durable consumer on DOORALERT (the services stopped) recreated as
    `dooralert provision` restores a lost one, but starting now, after the appended events:
    a log this big was handled long ago, and acknowledging a million through the consumers
    took longer than appending them. The consumers keep the contract (the services' watch
    accepts a restored consumer). Their names."""
    nc = await nats.connect(url, name="bench-skip")
    js = nc.jetstream()
    done = []
    try:
        now = datetime.now(UTC)
        for stream, want in consumer_configs():
            if stream != STREAM:
                continue
            assert want.durable_name is not None
            await js.delete_consumer(stream, want.durable_name)
            restored = restored_config(want, now=now)
            await js.add_consumer(stream, dataclasses.replace(restored, opt_start_time=now))
            done.append(want.durable_name)
    finally:
        await nc.close()
    return done
