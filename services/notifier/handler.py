"""The notifier's handler (I/O only): one notification request fetched, planned, sent and
recorded.

For each request it fetches what the notification is about from the event log, asks the plan
(plan.py) what to send where, sends it, and records the outcome (outcome.py) as events.

No duplicates: before sending, the delivery record (records.py) is checked; after the server
accepts, the record is written before the message is acked. Only a crash between the SMTP
server's accept and that write can cause a second email, and that email carries the same
Message-ID.

Round trips: what the notification is about is read while the delivery record is looked up
(both are reads, their order means nothing), and an incident's emails arriving together share
one read of its report, notes key and events (reports.SingleFlight). After the accept, the
record and the `notification.sent` event are written together, both before the ack: a crash
before both are stored leaves the request unacked, so it is redelivered and, if the record is
missing, sent again - the same window as before, never a lost alert. The event's id derives
from the notification id, so a second append of it is dropped by the log.

The delivery record reads of the requests that arrive together start together (`prefetch`,
called as each is taken off the inbox, before its handler's task starts: main.py's held pull,
or FastStream's fetch loop without it): one write to NATS for them instead of one per email,
since each handler otherwise reached its read in its own turn of the event loop. A handler
uses the read started for its own delivery of the message only if it started less than
`PREFETCH_FRESH` seconds ago, else reads again: the record is checked no longer before the
send than the handler's own reads of the report take.

An email's transaction starts as its handler does (`SmtpPool.begin`, smtp.Begun): on an idle
pooled session, MAIL, RCPT and DATA go to the server while the reads run, so once the email is
made only its body is left to send - for a server at a real network distance, one round trip
(with PIPELINING) or three (without) fewer after the reads. Nothing of it is accepted before the
body: when the record says the email already went, or nothing is to be sent, the transaction
is ended unsent (`Begun.drop`).

The ack of a finished request (`LazyAcks`, once the record and the event are stored) goes out
with the connection's next write, at most `ACK_WITHIN` seconds later, instead of in a write of
its own: in a burst the next email's reads and writes carry it. An ack lost in a crash meanwhile
only redelivers a request whose record is stored: it is not sent again (the `already_sent` path).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

from faststream.nats import NatsBroker, NatsMessage
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas.events import (
    EncounterReported,
    Event,
    EventDecodeError,
    NotificationRequested,
    NotificationSent,
    event_subject,
    parse_stored,
)
from services.domain.directory import Directory
from services.domain.incident import fold
from services.domain.notes import sealed_notes
from services.eventlog.interface import EventLog
from services.eventlog.jetstream import JetStreamEventLog, send_together
from services.eventlog.notekeys import JetStreamNoteKeys, MemoryNoteKeys, NoteKeys
from services.notifier.channels import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from services.notifier.notes import email_notes
from services.notifier.outcome import failed_event, gave_up, sent_event
from services.notifier.plan import (
    Found,
    PlanSettings,
    email_addresses,
    email_headers,
    plan_delivery,
    shows_current_report,
)
from services.notifier.records import DeliveryRecord, DeliveryRecords, JetStreamDeliveryRecords
from services.notifier.reports import ReportCache, SingleFlight
from services.notifier.send import Sender
from services.notifier.smtp import Begun, learn_addresses
from services.runtime.logging import get_logger
from services.runtime.metrics import (
    DELIVERY_LATENCY,
    NOTIFICATIONS_FAILED,
    NOTIFICATIONS_SENT,
    seconds_between,
)
from services.runtime.settings import Settings

log = get_logger("dooralert.notifier")
ACK_WITHIN = 0.002  # seconds an ack may wait for another write to NATS (see above)
PREFETCH_FRESH = 0.05  # seconds a prefetched delivery record read stays usable (see above)
_PREFETCHED = "_dooralert_record_read"  # the attribute of the fetched message holding it
_NOTIFICATION_ID = re.compile(rb'"notification_id":"([^"\\]{1,200})"')


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half: base·2^(n-1) ∈ [½, 1]·that."""
    raw = min(cap, base * float(2 ** max(attempt - 1, 0)))
    return raw / 2 + random.random() * raw / 2


class Notifier:
    """Delivers one notification request; returns None when done or a retry delay."""

    def __init__(
        self,
        *,
        settings: Settings,
        directory: Directory,
        broker: NatsBroker,
        event_log: EventLog | None = None,
        records: DeliveryRecords | None = None,
        note_keys: NoteKeys | None = None,
    ) -> None:
        self.settings, self.directory, self.broker = settings, directory, broker
        self.plan_settings = PlanSettings.from_settings(settings)
        self._log = event_log
        self._records = records
        # A given event log (tests) without keys: an empty store, so notes show as unavailable.
        self._note_keys = note_keys or (MemoryNoteKeys() if event_log is not None else None)
        self.sender = Sender(settings)
        self.reports = ReportCache()  # one log read per incident for its alerts
        # Concurrent requests of one incident share each read (see reports.SingleFlight).
        self._report_reads: SingleFlight[tuple[str, str], EncounterReported | None] = SingleFlight()
        self._incident_reads: SingleFlight[str, list[Event]] = SingleFlight()
        self._key_reads: SingleFlight[str, bytes | None] = SingleFlight()
        self._keys_binding = asyncio.Lock()
        self.smtp = self.sender.smtp  # the integration tests count its sessions
        self.acks = LazyAcks()

    @property
    def event_log(self) -> EventLog:
        """The event log given at construction, else JetStream on the broker's connection
        (which exists only once the broker has connected)."""
        if self._log is None:
            self._log = JetStreamEventLog(
                self.broker.connection.jetstream(),
                publish_timeout=self.settings.publish_timeout_seconds,
                retry_for=self.settings.publish_retry_seconds,
            )
        return self._log

    @property
    def records(self) -> DeliveryRecords:
        """The delivery records given at construction, else the JetStream bucket."""
        if self._records is None:
            self._records = JetStreamDeliveryRecords(
                self.broker.connection.jetstream(),
                retry_for=self.settings.publish_retry_seconds,
            )
        return self._records

    async def handle(self, req: NotificationRequested, msg: NatsMessage) -> float | None:
        """Deliver `req` once and record the outcome; None when done, else the retry delay."""
        d = req.data
        attempt = msg.raw_message.metadata.num_delivered
        record_read = _prefetched(msg.raw_message, d.notification_id)
        # The email's envelope goes to the server while the reads run (smtp.Begun). Only on a
        # first delivery: a redelivered request was most likely sent before a crash (its
        # record exists), and an unused transaction costs its pooled session.
        headers = email_headers(req, self.directory, self.plan_settings) if attempt == 1 else None
        begun = self.sender.smtp.begin(*headers) if headers is not None else None
        # Read what the notification is about while the record is looked up (both reads).
        found = asyncio.ensure_future(self._fetch(req))
        try:
            if record_read is None:
                record = await self.records.get(d.notification_id)
            else:
                record = await record_read
        except BaseException:
            _discard(found)
            _drop(begun)
            raise
        if record is not None:
            _discard(found)
            _drop(begun)
            # Delivered before a crash or redelivery: make sure the log says so, send nothing.
            now = datetime.now(UTC)
            await self.event_log.append(
                sent_event(req, attempt=record.attempt, reply=record.reply, now=now)
            )
            log.info("notification.already_sent", notification=d.notification_id)
            return None
        try:
            reply = await self._attempt(req, msg, found, begun)
        except PermanentDeliveryError as err:
            await self._give_up(req, attempt, err)
            return None
        except TransientDeliveryError as err:
            return await self._retry_later(req, attempt, err)
        now = datetime.now(UTC)
        # Both stored before the ack (see the module docstring), in one round trip.
        await self._store_sent(
            d.notification_id,
            DeliveryRecord(attempt, reply, at=now),
            sent_event(req, attempt=attempt, reply=reply, now=now),
        )
        log.info(
            "notification.sent",
            notification=d.notification_id,
            role=d.role,
            channel=d.channel,
            incident=req.incident_id,
            attempt=attempt,
        )
        return None

    async def _store_sent(
        self, notification_id: str, record: DeliveryRecord, event: NotificationSent
    ) -> None:
        """The delivery record and the `notification.sent` event, both stored (or the first
        failure raised once both have settled). On JetStream they go out in one flush through
        `send_together` (no task, `wait_for` or PubAck parse each: any answer but a PubAck goes
        to `put`'s and `append`'s own retrying publishes); other stores (the service tests'
        fakes) each in its own write, concurrently."""
        log_, records = self.event_log, self.records
        if not (
            isinstance(log_, JetStreamEventLog) and isinstance(records, JetStreamDeliveryRecords)
        ):
            await _all(records.put(notification_id, record), log_.append(event))
            return
        both = [
            await records.put_publish(notification_id, record),
            log_.publish_of(event, time.monotonic()),
        ]
        writes = await send_together(log_.js, both, timeout=log_.publish_timeout)
        await _all(*writes)  # both settled, the first failure raised; cancelled: both cancelled

    def prefetch(self, raw: Msg) -> None:
        """Start the delivery record read of a request just fetched (see the module
        docstring); `handle` takes it from the message. A body that is not a request is left
        to the handler to refuse. Only a first delivery: a redelivered request may still be in
        flight here (its ack_wait passed), so it is checked against the record as it is when
        its handler starts, as before."""
        if raw.metadata.num_delivered != 1:
            return
        # The id found where a stored request holds it (compact JSON), not parsed (0.7 µs, a
        # tenth of a parse): a body that does not hold it so, or holds something else so,
        # only starts a read the handler does not use (`_prefetched` compares the id it
        # parsed), and a body that is no request is refused by the handler.
        found = _NOTIFICATION_ID.search(raw.data)
        if found is None:
            return
        try:
            notification_id = found.group(1).decode()
        except UnicodeDecodeError:
            return
        read = asyncio.ensure_future(self.records.get(notification_id))
        read.add_done_callback(_retrieve)
        setattr(raw, _PREFETCHED, (notification_id, time.monotonic(), read))

    async def _attempt(
        self,
        req: NotificationRequested,
        msg: NatsMessage,
        found: Awaitable[Found],
        begun: Begun | None = None,
    ) -> str:
        """One delivery attempt (`found`: the fetch, started; `begun`: the email's transaction,
        if started); every failure comes out as a DeliveryError."""
        try:
            async with _heartbeat(msg):
                return await self._deliver(req, await found, begun)
        except DeliveryError:
            raise
        except Exception as exc:
            # Anything else (NATS hiccup, a bug, an unrenderable report) is retried with
            # backoff and recorded like a transient failure, then falls back and escalates
            # like one: never an endless silent retry.
            log.exception("notification.error", notification=req.data.notification_id)
            raise TransientDeliveryError(f"internal error: {type(exc).__name__}") from None
        finally:
            _drop(begun)  # not sent: ended (nothing once the send took it)

    async def _retry_later(
        self, req: NotificationRequested, attempt: int, err: TransientDeliveryError
    ) -> float | None:
        """Record the transient failure and return the backoff; give up after the last try."""
        if attempt >= self.settings.max_attempts:
            final = PermanentDeliveryError(f"gave up after {attempt} attempts: {err.reason}")
            await self._give_up(req, attempt, final)
            return None
        s = self.settings
        delay = backoff(attempt, base=s.retry_base_seconds, cap=s.retry_max_seconds)
        retry_in = round(delay, 3)
        NOTIFICATIONS_FAILED.labels(req.data.channel, req.data.kind, "retry").inc()
        await self.event_log.append(
            failed_event(
                req, attempt=attempt, reason=err.reason, retry_in=retry_in, now=datetime.now(UTC)
            )
        )
        log.info(
            "notification.retry",
            notification=req.data.notification_id,
            attempt=attempt,
            delay=retry_in,
            reason=err.reason,
        )
        return delay

    async def _give_up(self, req: NotificationRequested, attempt: int, err: DeliveryError) -> None:
        """Record the permanent failure; then request the contact's next channel, if any."""
        d = req.data
        failed, fallback = gave_up(
            req,
            self.directory.contact(d.contact_id),
            attempt=attempt,
            reason=err.reason,
            now=datetime.now(UTC),
        )
        # The failure first: see outcome.gave_up.
        await self.event_log.append(failed)
        NOTIFICATIONS_FAILED.labels(d.channel, d.kind, "gave_up").inc()
        log.warning(
            "notification.failed",
            notification=d.notification_id,
            role=d.role,
            channel=d.channel,
            incident=req.incident_id,
            attempt=attempt,
            reason=err.reason,
            fallback=fallback.data.channel if fallback is not None else None,
            contact_unreachable=fallback is None,
        )
        if fallback is not None:
            await self.event_log.append(fallback)

    async def _deliver(
        self, req: NotificationRequested, found: Found, begun: Begun | None = None
    ) -> str:
        """Plan and send what was fetched: the server's reply, or a DeliveryError."""
        delivery = plan_delivery(
            req,
            found,
            directory=self.directory,
            settings=self.plan_settings,
            now=datetime.now(UTC),
        )
        reply = await self.sender.send(delivery, now=datetime.now(UTC), begun=begun)
        _count_sent(req, found, at=datetime.now(UTC))
        return reply

    async def _fetch(self, req: NotificationRequested) -> Found:
        """What the notification is about, as the log holds it now."""
        school, incident = req.school_id, req.incident_id
        if req.data.kind == "pattern":
            return Found(pattern=await self.event_log.last(school, incident, "pattern.detected"))
        cached = self.reports.get(school, incident)
        key = self._key_ahead(req, cached)
        try:
            report = cached or await self._report_reads.read(
                (school, incident), lambda: self._read_report(school, incident)
            )
            if report is None or not shows_current_report(req):
                notes = await self._notes(req, [report] if report else [], key)
                return Found(report=report, notes=notes)
            events = await self._read_incident(incident)
            notes = await self._notes(req, events, key)
            return Found(report=report, state=fold(events, incident_id=incident), notes=notes)
        finally:
            if key is not None and not key.done():
                key.cancel()  # its waiter only: the shared read goes on for the others

    def _key_ahead(
        self, req: NotificationRequested, cached: EncounterReported | None
    ) -> asyncio.Future[bytes | None] | None:
        """The incident's notes key, read while its report is (an email's first read of an
        incident: one round trip fewer before its notes can be opened than reading the key
        once the report says it has sealed notes). Only for an email about the report alone
        (a follow-up reads the key after the incident's events, as before: a key forgotten
        with `audit forget` before its `notes.forgotten` event is read is never used with
        it), once the keys' bucket is open (a missing or forbidden bucket is then tried only
        by emails with sealed notes, as before), and not when the remembered report shows
        no notes."""
        keys = self._note_keys
        if req.data.channel != "email" or shows_current_report(req) or keys is None:
            return None
        if cached is not None:
            found = sealed_notes(cached)
            if found is None or found[1] is None:
                return None
        ahead = asyncio.ensure_future(keys.get(req.incident_id))
        ahead.add_done_callback(_retrieve)
        return ahead

    async def _read_report(self, school: str, incident: str) -> EncounterReported | None:
        """The incident's report from the log (remembered in `reports`), or None."""
        raw = await self.event_log.last(school, incident, "encounter.reported")
        if raw is None:
            return None
        report = _as_report(raw, event_subject(school, incident, "encounter.reported"))
        if report is None:
            # The last message on the subject is unreadable: take the incident's first
            # readable report from the log (read_incident skips unreadable messages).
            events = await self._read_incident(incident)
            report = next((e for e in events if isinstance(e, EncounterReported)), None)
        # Only the report the subject names: a copy bound elsewhere is not remembered here.
        if report is not None and (report.school_id, report.incident_id) == (school, incident):
            self.reports.put(report)
        return report

    async def _read_incident(self, incident: str) -> list[Event]:
        """The incident's events as the log holds them now (one read for concurrent callers;
        each gets its own list)."""
        events = await self._incident_reads.read(
            incident, lambda: self.event_log.read_incident(incident)
        )
        return list(events)

    async def _notes(
        self,
        req: NotificationRequested,
        events: list[Event],
        key: asyncio.Future[bytes | None] | None = None,
    ) -> str | None:
        retention = timedelta(days=self.settings.notes_retention_days)
        if key is None:
            return await email_notes(req, events, self._keys, retention=retention)

        async def keys() -> NoteKeys:
            return _KeyReadAhead(await self._keys(), req.incident_id, key)

        return await email_notes(req, events, keys, retention=retention)

    async def _keys(self) -> NoteKeys:
        if self._note_keys is None:
            async with self._keys_binding:  # one bucket lookup, however many ask at first
                if self._note_keys is None:
                    js = self.broker.connection.jetstream()
                    self._note_keys = _SharedKeyReads(
                        await JetStreamNoteKeys.open(js, retry_for=2.0), self._key_reads
                    )
        return self._note_keys

    async def learn_addresses(self) -> int:
        """Work out ahead the SMTP envelope of every email contact in the directory (see
        smtp.learn_addresses): the number learnt."""
        return await learn_addresses(self.plan_settings.sender, email_addresses(self.directory))

    async def close(self) -> None:
        """Close the channels' clients (pooled SMTP sessions, the HTTP client)."""
        await self.sender.close()


class LazyAcks:
    """Acks written with the connection's next write (see the module docstring).

    The ack is queued in the NATS client's pending buffer without waking its flusher; the next
    publish or request of this process writes it along, and a timer flushes it after `within`
    seconds when nothing else did. A message whose client cannot queue it is acked at once.
    """

    def __init__(self, within: float = ACK_WITHIN) -> None:
        self.within = within
        self._due: dict[int, asyncio.TimerHandle] = {}
        self._flushes: set[asyncio.Task[object]] = set()

    async def ack(self, raw: Msg) -> None:
        if raw._ackd:
            return
        client = raw._client
        if not raw.reply or not client.is_connected:
            await raw.ack()
            return
        try:
            await client._send_command(f"PUB {raw.reply} 0\r\n\r\n".encode())
        except AttributeError:  # a nats-py without it (internal): an ack of its own
            await raw.ack()
            return
        client.stats["out_msgs"] += 1
        raw._ackd = True
        if id(client) not in self._due:
            loop = asyncio.get_running_loop()
            self._due[id(client)] = loop.call_later(self.within, self._flush, client)

    def _flush(self, client: Client) -> None:
        del self._due[id(client)]
        if client.is_connected:
            task = asyncio.ensure_future(client._flush_pending())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)


class _SharedKeyReads:
    """Notes keys whose concurrent reads of one incident's key are one read (nothing is kept
    after it: a key forgotten afterwards is not used by a later email)."""

    def __init__(self, keys: NoteKeys, reads: SingleFlight[str, bytes | None]) -> None:
        self._keys, self._reads = keys, reads

    async def get(self, incident_id: str) -> bytes | None:
        return await self._reads.read(incident_id, lambda: self._keys.get(incident_id))

    async def create_if_absent(self, incident_id: str, value: bytes) -> bytes:
        return await self._keys.create_if_absent(incident_id, value)

    async def forget(self, incident_id: str) -> bool:
        return await self._keys.forget(incident_id)


class _KeyReadAhead:
    """Notes keys whose read of one incident's key was started ahead (`Notifier._key_ahead`):
    asked for that key, it is that read's answer (or error)."""

    def __init__(
        self, keys: NoteKeys, incident_id: str, read: asyncio.Future[bytes | None]
    ) -> None:
        self._keys, self._incident, self._read = keys, incident_id, read

    async def get(self, incident_id: str) -> bytes | None:
        if incident_id == self._incident:
            return await asyncio.shield(self._read)
        return await self._keys.get(incident_id)

    async def create_if_absent(self, incident_id: str, value: bytes) -> bytes:
        return await self._keys.create_if_absent(incident_id, value)

    async def forget(self, incident_id: str) -> bool:
        return await self._keys.forget(incident_id)


def _prefetched(raw: Msg, notification_id: str) -> asyncio.Future[DeliveryRecord | None] | None:
    """The record read `prefetch` started for this delivery of the message, if still fresh."""
    started = raw.__dict__.pop(_PREFETCHED, None)
    if started is None:
        return None
    nid, at, read = started
    if nid != notification_id or time.monotonic() - at > PREFETCH_FRESH:
        read.cancel()
        return None
    return read  # type: ignore[no-any-return]


def _drop(begun: Begun | None) -> None:
    if begun is not None:
        begun.drop()


def _retrieve(read: asyncio.Future[DeliveryRecord | None] | asyncio.Future[bytes | None]) -> None:
    """A read started ahead that nobody awaits (its message was refused, its report has no
    notes) does not log its error."""
    if not read.cancelled():
        read.exception()


def _discard(task: asyncio.Future[Found]) -> None:
    """Drop a fetch that is not needed (its error, if any, is not needed either)."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _all(*writes: Awaitable[object]) -> None:
    """Await every write, concurrently; raise the first failure (in argument order) once all
    have settled.

    All but the last run as tasks and the last in this one: a task fewer per email than
    `asyncio.gather` (which also wraps the last). Cancelled, it cancels them, as gather does.
    """
    *others, last = writes
    tasks = [asyncio.ensure_future(w) for w in others]
    failure: Exception | None = None
    try:
        try:
            await last
        except Exception as exc:  # noqa: BLE001 - raised below, once all settled
            failure = exc
        for task in reversed(tasks):  # the earliest's failure is the one kept
            try:
                await task
            except Exception as exc:  # noqa: BLE001 - raised below, once all settled
                failure = exc
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    if failure is not None:
        raise failure


class _heartbeat:
    """Tell the server the message is still being worked on while a slow send runs, so it is
    not redelivered (and sent twice) past the consumer's ack_wait.

    A timer, not a task per message: almost every send ends long before the first beat, and
    a timer costs one heap entry to set and cancel where a sleeping task costs two event
    loop steps and a cancellation (per email, in a burst). A beat that is due runs as a task.
    """

    __slots__ = ("_beats", "_every", "_loop", "_msg", "_timer")

    def __init__(self, msg: NatsMessage, every: float = 10.0) -> None:
        self._msg, self._every = msg, every
        self._beats: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(self._every, self._due)

    async def __aexit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in self._beats:
            task.cancel()

    def _due(self) -> None:
        task = self._loop.create_task(self._beat())
        self._beats.add(task)
        task.add_done_callback(self._beats.discard)
        self._timer = self._loop.call_later(self._every, self._due)

    async def _beat(self) -> None:
        try:
            await self._msg.in_progress()
        except Exception:  # noqa: BLE001 - a missed beat only risks a redelivery
            log.warning("notification.heartbeat_failed")


def _count_sent(req: NotificationRequested, found: Found, *, at: datetime) -> None:
    """Metrics of an accepted notification: an alert's latency runs from the report being
    recorded, any other kind's from its request."""
    d = req.data
    start = found.report.recorded_at if d.kind == "alert" and found.report else req.recorded_at
    NOTIFICATIONS_SENT.labels(d.channel, d.kind).inc()
    DELIVERY_LATENCY.labels(d.channel, d.kind).observe(seconds_between(start, at))


def _as_report(raw: bytes, subject: str) -> EncounterReported | None:
    try:
        event = parse_stored(raw, subject)
    except EventDecodeError:
        return None
    return event if isinstance(event, EncounterReported) else None
