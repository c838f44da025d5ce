"""Fakes for the service tests: `FakeEventLog` implements the services' `EventLog` interface
(with the server's duplicate window), `FakeJetStream` the slice of nats-py that
`JetStreamEventLog` and the delivery records use, and `FakeMessage` records how a delivered
message was settled; `FakeDeliveryRecords` implements the notifier's `DeliveryRecords`.
Delivery guarantees against a real nats-server are integration tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from schemas.events import Event, parse_event, serialize_event, subject_for
from services.eventlog.interface import Appended, StoredMessage, TailReset
from services.notifier.records import DeliveryRecord


class FakeKeyValue:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> Any:
        if key not in self.data:
            raise KeyNotFoundError
        return SimpleNamespace(key=key, value=self.data[key])

    async def put(self, key: str, value: bytes) -> int:
        self.data[key] = value
        return len(self.data)


class FakeJetStream:
    """Stores what is published, dropping a repeated Nats-Msg-Id as the server does."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, bytes]] = []  # the DOORALERT stream
        self.other_streams: list[tuple[str | None, str, bytes]] = []  # e.g. timers
        self.publishes = 0
        self.fail_with: Exception | None = None
        self._ids: set[str] = set()
        self.buckets: dict[str, FakeKeyValue] = {}

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        self.publishes += 1
        if self.fail_with is not None:
            raise self.fail_with
        msg_id = (headers or {}).get("Nats-Msg-Id")
        if stream not in (None, "DOORALERT"):
            self.other_streams.append((stream, subject, payload))
            return PubAck(stream=stream, seq=len(self.other_streams))
        if msg_id is not None and msg_id in self._ids:
            return PubAck(stream=stream or "DOORALERT", seq=len(self.stored), duplicate=True)
        if msg_id is not None:
            self._ids.add(msg_id)
        self.stored.append((subject, payload))
        return PubAck(stream=stream or "DOORALERT", seq=len(self.stored))

    async def get_last_msg(self, stream_name: str, subject: str, direct: bool = False) -> Any:
        for stored_subject, data in reversed(self.stored):
            if stored_subject == subject:
                return SimpleNamespace(subject=subject, data=data)
        raise NotFoundError

    async def key_value(self, bucket: str) -> FakeKeyValue:
        if bucket not in self.buckets:
            raise BucketNotFoundError
        return self.buckets[bucket]

    def events(self) -> list[Event]:
        return [parse_event(data) for _, data in self.stored]


class FakeClient:
    def __init__(self, js: FakeJetStream) -> None:
        self.js = js

    def jetstream(self, **_: Any) -> FakeJetStream:
        return self.js


def ack_subject(consumer: str, *, delivered: int = 1, seq: int = 17) -> str:
    """The reply subject JetStream gives a delivered message; its metadata is parsed from it."""
    return f"$JS.ACK.DOORALERT.{consumer}.{delivered}.{seq}.{seq}.1740843000000000000.0"


class FakeMessage:
    """A delivered message: a real nats `Msg` inside, settled exactly once."""

    def __init__(
        self,
        data: bytes,
        subject: str,
        *,
        consumer: str = "router",
        delivered: int = 1,
        seq: int = 17,
    ) -> None:
        self.raw_message = Msg(
            _client=None,  # type: ignore[arg-type]
            subject=subject,
            reply=ack_subject(consumer, delivered=delivered, seq=seq),
            data=data,
        )
        self.outcome: str | None = None
        self.delay: float | None = None

    def _settle(self, outcome: str) -> None:
        assert self.outcome is None, f"settled twice: {self.outcome}, then {outcome}"
        self.outcome = outcome

    async def ack(self) -> None:
        self._settle("ack")

    async def nack(self, delay: float | None = None) -> None:
        self._settle("nack")
        self.delay = delay

    async def reject(self) -> None:
        self._settle("reject")


class FakeBroker:
    """What `Notifier` uses of a broker: its connection."""

    def __init__(self, js: FakeJetStream) -> None:
        self.connection = FakeClient(js)


class FakeTail:
    """A tail over a FakeEventLog: each call returns what was appended since the last one."""

    def __init__(self, log: FakeEventLog, subjects: Sequence[str]) -> None:
        self.log, self.subjects, self.seen = log, list(subjects), 0

    def _matches(self, subject: str) -> bool:
        parts = subject.split(".")
        for pattern in self.subjects:
            want = pattern.split(".")
            if len(want) == len(parts) and all(
                w in ("*", p) for w, p in zip(want, parts, strict=True)
            ):
                return True
        return False

    async def read_new(self) -> list[StoredMessage]:
        if self.log.fail_with is not None:
            raise TailReset(str(self.log.fail_with))
        new = self.log.messages[self.seen :]
        self.seen = len(self.log.messages)
        return [m for m in new if self._matches(m.subject)]

    async def close(self) -> None:
        return None


class FakeEventLog:
    """The `EventLog` in memory: drops a repeated event id as the server's duplicate window
    does, and can be told to fail every call (`fail_with`)."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self.schedules: list[tuple[str, bytes, datetime, str, str]] = []
        self.appends = 0
        self.fail_with: Exception | None = None
        self._ids: set[str] = set()

    @property
    def stored(self) -> list[tuple[str, bytes]]:
        return [(m.subject, m.data) for m in self.messages]

    def events(self) -> list[Event]:
        return [parse_event(m.data) for m in self.messages]

    def store_raw(self, subject: str, data: bytes) -> None:
        """Put bytes in the log as they are (a poison message, an older version)."""
        self.messages.append(
            StoredMessage(
                seq=len(self.messages) + 1, subject=subject, time=datetime.now(UTC), data=data
            )
        )

    async def append(self, event: Event) -> Appended:
        self.appends += 1
        if self.fail_with is not None:
            raise self.fail_with
        if event.id in self._ids:
            return Appended(seq=len(self.messages), duplicate=True)
        self._ids.add(event.id)
        self.store_raw(subject_for(event), serialize_event(event))
        return Appended(seq=len(self.messages))

    async def append_all(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.append(event)

    async def read_incident(self, incident_id: str) -> list[Event]:
        if self.fail_with is not None:
            raise self.fail_with
        out = []
        for m in self.messages:
            if m.subject.split(".")[2] == incident_id:
                try:
                    out.append(m.event())
                except ValueError:
                    continue
        return out

    async def last(self, school_id: str, incident_id: str, event_type: str) -> bytes | None:
        if self.fail_with is not None:
            raise self.fail_with
        subject = f"dooralert.{school_id}.{incident_id}.{event_type}"
        for m in reversed(self.messages):
            if m.subject == subject:
                return m.data
        return None

    def tail(self, subjects: Sequence[str], *, since: datetime) -> FakeTail:
        return FakeTail(self, subjects)

    async def schedule(
        self, subject: str, payload: bytes, *, fire_at: datetime, target: str, msg_id: str
    ) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.schedules.append((subject, payload, fire_at, target, msg_id))


class FakeDeliveryRecords:
    """The notifier's `DeliveryRecords` in memory; can be told to fail every call."""

    def __init__(self) -> None:
        self.stored: dict[str, DeliveryRecord] = {}
        self.fail_with: Exception | None = None

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        if self.fail_with is not None:
            raise self.fail_with
        return self.stored.get(notification_id)

    async def put(self, notification_id: str, record: DeliveryRecord) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.stored[notification_id] = record
