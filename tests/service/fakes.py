"""Fakes for the service tests: the slice of the nats-py JetStream interface the services use
(publish with the server's duplicate window, get_last_msg, key_value) and a message that
records how it was settled. Delivery guarantees against a real nats-server are integration
tests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from schemas.events import Event, parse_event


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

    async def get_last_msg(self, stream_name: str, subject: str) -> Any:
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
            _client=None,
            subject=subject,  # type: ignore[arg-type]
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
