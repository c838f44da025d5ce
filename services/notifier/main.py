"""The notifier service (I/O only): notification requests in, deliveries and outcomes out.

No duplicates: before sending, the delivery record in the DOORALERT_DELIVERIES bucket is
checked; after the server accepts, the record is written before the message is acked. Only
a crash between the SMTP server's accept and that write can cause a second email, and that
email carries the same Message-ID.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from schemas.events import (
    EncounterReported,
    EventDecodeError,
    NotificationFailed,
    NotificationFailedData,
    NotificationRequested,
    NotificationSent,
    NotificationSentData,
    PatternDetected,
    derive_id,
    parse_event,
)
from services.domain.directory import (
    AppriseChannel,
    Contact,
    Directory,
    EmailChannel,
    WebhookChannel,
)
from services.domain.incident import fold
from services.domain.tokens import AckClaim, ack_token, view_token
from services.eventlog import (
    DELIVERIES_BUCKET,
    STREAM,
    SUBJECT_PREFIX,
    get_last,
    publish_event,
    read_incident,
    retrying,
)
from services.eventlog.consumer import raw_decoder, run_handler
from services.eventlog.jetstream import JetStreamEventLog
from services.notifier.apprise_channel import send_apprise
from services.notifier.channels import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from services.notifier.deadletters import ADVISORY_SUBJECT, record_advisory
from services.notifier.message import (
    AlertContext,
    TemplateCheckError,
    build_email,
    build_pattern_email,
    default_templates,
)
from services.notifier.plan import fallback_request, next_channel, webhook_payload
from services.notifier.smtp import SmtpPool
from services.notifier.webhook import post_webhook
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.notifier")
SUBJECT = f"{SUBJECT_PREFIX}.*.*.notification.requested"


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half: base·2^(n-1) ∈ [½, 1]·that."""
    raw = min(cap, base * 2 ** max(attempt - 1, 0))
    return raw / 2 + random.random() * raw / 2


class Notifier:
    """Delivers one notification request; returns None when done or a retry delay."""

    def __init__(self, *, settings: Settings, directory: Directory, broker: NatsBroker) -> None:
        self.settings = settings
        self.directory = directory
        self.broker = broker
        self._kv: KeyValue | None = None
        self.smtp = SmtpPool(settings=settings)
        self._http: httpx.AsyncClient | None = None

    @property
    def js(self):  # type: ignore[no-untyped-def]
        return self.broker.connection.jetstream()

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(DELIVERIES_BUCKET)
        return self._kv

    def _common(self, req: NotificationRequested) -> dict[str, object]:
        now = datetime.now(UTC)
        return {
            "source": "notifier",
            "incident_id": req.incident_id,
            "school_id": req.school_id,
            "occurred_at": now,
            "recorded_at": now,
            "correlation_id": req.correlation_id,
            "causation_id": req.id,
            "actor": "system",
        }

    async def _record_sent(self, req: NotificationRequested, attempt: int, reply: str) -> None:
        d = req.data
        await publish_event(
            self.js,
            NotificationSent(
                id=derive_id(d.notification_id, "sent"),
                data=NotificationSentData(
                    notification_id=d.notification_id,
                    role=d.role,
                    contact_id=d.contact_id,
                    channel=d.channel,
                    attempt=attempt,
                    reply=reply,
                ),
                **self._common(req),  # type: ignore[arg-type]
            ),
        )

    async def _record_failed(
        self,
        req: NotificationRequested,
        attempt: int,
        err: DeliveryError,
        retry_in: float | None,
        *,
        unreachable: bool = False,
    ) -> None:
        d = req.data
        await publish_event(
            self.js,
            NotificationFailed(
                id=derive_id(d.notification_id, "failed", str(attempt)),
                data=NotificationFailedData(
                    notification_id=d.notification_id,
                    role=d.role,
                    contact_id=d.contact_id,
                    channel=d.channel,
                    attempt=attempt,
                    permanent=retry_in is None,
                    reason=err.reason,
                    next_attempt_in_seconds=retry_in,
                    contact_unreachable=unreachable,
                ),
                **self._common(req),  # type: ignore[arg-type]
            ),
        )

    async def handle(self, req: NotificationRequested, msg: NatsMessage) -> float | None:
        d = req.data
        attempt = msg.raw_message.metadata.num_delivered
        kv = await self.kv()

        async def lookup():  # type: ignore[no-untyped-def]
            try:
                return await kv.get(d.notification_id)
            except KeyNotFoundError:
                return None

        # Both bucket operations ride out a cluster failover like a publish does: a record
        # lost after the server accepted the email would mean a second email on redelivery.
        retry_for = self.settings.publish_retry_seconds
        entry = await retrying(lookup, retry_for=retry_for, what="delivery_record.get")
        if entry is not None and entry.value:
            # Delivered before a crash or redelivery: make sure the log says so, send nothing.
            record = json.loads(entry.value)
            await self._record_sent(req, record["attempt"], record["reply"])
            log.info("notification.already_sent", notification=d.notification_id)
            return None
        try:
            try:
                async with _heartbeat(msg):
                    reply = await self._deliver(req)
            except DeliveryError:
                raise
            except Exception as exc:
                # Anything else (NATS hiccup, a bug, an unrenderable report) is retried with
                # backoff and recorded like a transient failure, then falls back and escalates
                # like one: never an endless silent retry.
                log.exception("notification.error", notification=d.notification_id)
                raise TransientDeliveryError(f"internal error: {type(exc).__name__}") from None
        except PermanentDeliveryError as err:
            await self._give_up(req, attempt, err)
            return None
        except TransientDeliveryError as err:
            if attempt >= self.settings.max_attempts:
                final = PermanentDeliveryError(f"gave up after {attempt} attempts: {err.reason}")
                await self._give_up(req, attempt, final)
                return None
            delay = backoff(
                attempt, base=self.settings.retry_base_seconds, cap=self.settings.retry_max_seconds
            )
            await self._record_failed(req, attempt, err, round(delay, 3))
            log.info(
                "notification.retry",
                notification=d.notification_id,
                attempt=attempt,
                delay=round(delay, 3),
                reason=err.reason,
            )
            return delay
        record = json.dumps(
            {"attempt": attempt, "reply": reply, "at": datetime.now(UTC).isoformat()}
        ).encode()
        await retrying(
            lambda: kv.put(d.notification_id, record),
            retry_for=retry_for,
            what="delivery_record.put",
        )
        await self._record_sent(req, attempt, reply)
        log.info(
            "notification.sent",
            notification=d.notification_id,
            role=d.role,
            channel=d.channel,
            incident=req.incident_id,
            attempt=attempt,
        )
        return None

    async def _give_up(self, req: NotificationRequested, attempt: int, err: DeliveryError) -> None:
        """Record the permanent failure; then try the contact's next channel, if any.

        The failure is appended before the fallback request: a crash in between redelivers
        this request, and both events have deterministic ids, so neither is doubled.
        """
        d = req.data
        nxt = next_channel(self.directory.contact(d.contact_id), d.channel)
        await self._record_failed(req, attempt, err, None, unreachable=nxt is None)
        log.warning(
            "notification.failed",
            notification=d.notification_id,
            role=d.role,
            channel=d.channel,
            incident=req.incident_id,
            attempt=attempt,
            reason=err.reason,
            fallback=nxt,
            contact_unreachable=nxt is None,
        )
        if nxt is not None:
            await publish_event(self.js, fallback_request(req, nxt, now=datetime.now(UTC)))

    async def _deliver(self, req: NotificationRequested) -> str:
        d = req.data
        contact = self.directory.contact(d.contact_id)
        if contact is None:
            raise PermanentDeliveryError(f'contact "{d.contact_id}" is not in district.yaml')
        channel = next((c for c in contact.channels if c.type == d.channel), None)
        if channel is None:
            raise PermanentDeliveryError(f'contact "{d.contact_id}" has no {d.channel} channel')
        if d.kind == "pattern":
            return await self._deliver_pattern(req, contact, channel)
        raw = await get_last(
            self.js, f"{SUBJECT_PREFIX}.{req.school_id}.{req.incident_id}.encounter.reported"
        )
        if raw is None:
            raise TransientDeliveryError("the incident's report is not in the log yet")
        report = _as_report(raw)
        if report is None:
            # The last message on the subject is unreadable: take the incident's first
            # readable report from the log (read_incident skips unreadable messages).
            report = next(
                (
                    e
                    for e in await read_incident(self.js, req.incident_id)
                    if isinstance(e, EncounterReported)
                ),
                None,
            )
        if report is None:
            raise TransientDeliveryError("the incident's report is not in the log yet")
        if d.kind in ("update", "resolved"):
            # Follow-ups show the report as it stands now, updates applied.
            state = fold(await read_incident(self.js, req.incident_id))
            if state is not None and state.report is not None:
                report = report.model_copy(update={"data": state.report})
        school = self.directory.school(req.school_id)
        school_name = school.name if school else req.school_id
        secret = self.settings.secret_key.get_secret_value()
        token = view_token(secret, req.incident_id)
        status_url = f"{self.settings.base_url}/incidents/{req.incident_id}?token={token}"
        ack_url = None
        if d.kind in ("alert", "escalation"):
            expires = datetime.now(UTC) + timedelta(days=self.settings.ack_link_days)
            claim = AckClaim(
                req.incident_id,
                req.school_id,
                d.role,
                d.contact_id,
                d.notification_id,
                int(expires.timestamp()),
            )
            ack_url = f"{self.settings.base_url}/ack/{ack_token(secret, claim)}"
        if isinstance(channel, WebhookChannel):
            payload = webhook_payload(req, report, school_name=school_name, status_url=status_url)
            # No ack link: webhooks often post into shared rooms (see the README).
            payload["kind"] = d.kind
            return await post_webhook(
                self.http(),
                channel.url,
                payload,
                secret=self.webhook_secret,
                now=datetime.now(UTC),
                timeout=self.settings.webhook_timeout,
            )
        ctx = AlertContext(
            district_name=self.directory.district.name,
            school_name=school_name,
            timezone=self.directory.district.timezone,
            recipient_name=contact.name,
            status_url=status_url,
            emergency_phone=self.directory.district.emergency_phone,
        )
        to = channel.address if isinstance(channel, EmailChannel) else "apprise@dooralert.invalid"
        message = build_email(
            request=req,
            report=report,
            ctx=ctx,
            sender=self.settings.smtp_from,
            to=to,
            language=contact.language,
            ack_url=ack_url,
        )
        if isinstance(channel, AppriseChannel):
            # Chat rooms and SMS are shared places: the plain-text alert without staff notes
            # and without the acknowledgement link (anyone in the room could use it).
            message = build_email(
                request=req,
                report=report.model_copy(
                    update={"data": report.data.model_copy(update={"notes": None})}
                ),
                ctx=ctx,
                sender=self.settings.smtp_from,
                to=to,
                language=contact.language,
                ack_url=None,
            )
            body = message.get_body(("plain",))
            return await send_apprise(
                channel.url,
                title=str(message["Subject"]),
                body=body.get_content() if body is not None else "",
                timeout=self.settings.webhook_timeout,
            )
        return await self.smtp.send(message)

    async def _deliver_pattern(
        self,
        req: NotificationRequested,
        contact: Contact,
        channel: EmailChannel | WebhookChannel | AppriseChannel,
    ) -> str:
        raw = await get_last(
            self.js, f"{SUBJECT_PREFIX}.{req.school_id}.{req.incident_id}.pattern.detected"
        )
        if raw is None:
            raise TransientDeliveryError("the pattern event is not in the log yet")
        try:
            pattern = parse_event(raw)
        except EventDecodeError as exc:
            raise PermanentDeliveryError(f"the pattern event is unreadable: {exc}") from None
        if not isinstance(pattern, PatternDetected):
            raise PermanentDeliveryError("the pattern subject holds another event type")
        names = {s.id: s.name for s in self.directory.schools}
        if isinstance(channel, WebhookChannel):
            payload: dict[str, object] = {
                "type": "dooralert.pattern",
                "kind": "pattern",
                "delivery_id": req.data.notification_id,
                "pattern": pattern.data.pattern,
                "window_minutes": pattern.data.window_minutes,
                "incident_ids": pattern.data.incident_ids,
                "schools": [{"id": s, "name": names.get(s, s)} for s in pattern.data.school_ids],
                "severity": pattern.data.severity,
            }
            return await post_webhook(
                self.http(),
                channel.url,
                payload,
                secret=self.webhook_secret,
                now=datetime.now(UTC),
                timeout=self.settings.webhook_timeout,
            )
        if isinstance(channel, AppriseChannel):
            d = pattern.data
            return await send_apprise(
                channel.url,
                title=f"dooralert: encounters at {len(d.school_ids)} schools",
                body=f"Agents reported at {', '.join(names.get(s, s) for s in d.school_ids)} "
                f"within {d.window_minutes} minutes.",
                timeout=self.settings.webhook_timeout,
            )
        ctx = AlertContext(
            district_name=self.directory.district.name,
            school_name="",
            timezone="UTC",
            recipient_name=contact.name,
            status_url="",
            emergency_phone=self.directory.district.emergency_phone,
        )
        message = build_pattern_email(
            request=req,
            pattern=pattern,
            school_names=names,
            ctx=ctx,
            sender=self.settings.smtp_from,
            to=channel.address,
            language=contact.language,
        )
        return await self.smtp.send(message)

    @property
    def webhook_secret(self) -> str:
        secret = self.settings.webhook_secret or self.settings.secret_key
        return secret.get_secret_value()

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            # No redirects: a signed alert goes only to the URL the directory names.
            self._http = httpx.AsyncClient(
                follow_redirects=False, timeout=self.settings.webhook_timeout
            )
        return self._http

    async def close(self) -> None:
        await self.smtp.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


@asynccontextmanager
async def _heartbeat(msg: NatsMessage, every: float = 10.0) -> AsyncIterator[None]:
    """Tell the server the message is still being worked on while a slow send runs, so it is
    not redelivered (and sent twice) past the consumer's ack_wait."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await msg.in_progress()
            except Exception:  # noqa: BLE001 - a missed beat only risks a redelivery
                log.warning("notification.heartbeat_failed")

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _as_report(raw: bytes | None) -> EncounterReported | None:
    if raw is None:
        return None
    try:
        event = parse_event(raw)
    except EventDecodeError:
        return None
    return event if isinstance(event, EncounterReported) else None


def build_broker(settings: Settings, *, directory: Directory) -> NatsBroker:
    return build_notifier(settings, directory=directory)[0]


def build_notifier(settings: Settings, *, directory: Directory) -> tuple[NatsBroker, Notifier]:
    """The broker with the notifier's subscribers, and the notifier (to close its clients).

    Raises TemplateCheckError when a template is missing or broken: no alert goes out
    half-rendered, so the notifier does not start.
    """
    default_templates().check()
    broker = NatsBroker(
        settings.nats_url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        log_level=logging.DEBUG,
    )
    notifier = Notifier(settings=settings, directory=directory, broker=broker)

    @broker.subscriber(
        SUBJECT,
        stream=JStream(STREAM, declare=False),
        durable="notifier",
        # Concurrent workers: a slow or hanging target holds one worker, never the others.
        pull_sub=PullSub(batch_size=max(1, settings.notifier_workers), timeout=1.0),
        max_workers=max(2, settings.notifier_workers),
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_decoder,
        title="notifier",
        description="Delivers each notification request and records the outcome",
    )
    async def on_request(body: bytes, msg: NatsMessage) -> None:
        await run_handler(
            msg,
            event_log=JetStreamEventLog(
                broker.connection.jetstream(),
                publish_timeout=settings.publish_timeout_seconds,
                retry_for=settings.publish_retry_seconds,
            ),
            consumer="notifier",
            expect=NotificationRequested,
            handle=notifier.handle,
        )

    @broker.subscriber(
        ADVISORY_SUBJECT,
        decoder=raw_decoder,
        title="dead-letters",
        description="Max-deliveries advisories recorded as message.dead_lettered events",
    )
    async def on_max_deliveries(body: bytes, msg: NatsMessage) -> None:
        try:
            await record_advisory(broker.connection.jetstream(), body)
        except Exception:
            log.exception("advisory.record_failed")

    return broker, notifier


def build_app(settings: Settings, *, directory: Directory) -> FastStream:
    try:
        broker, notifier = build_notifier(settings, directory=directory)
    except TemplateCheckError as exc:
        raise SystemExit(f"dooralert notifier: refusing to start: {exc}") from None
    app = FastStream(broker)
    app.after_shutdown(notifier.close)
    return app
