"""Delivery records: which notifications the receiving side has already accepted.

One key per notification id in the DOORALERT_DELIVERIES bucket. The notifier checks it before
sending and writes it after the server accepts, before the request is acked (main.py says
why). `DeliveryRecords` is what the notifier needs of the bucket; `JetStreamDeliveryRecords` is
the real one, and the service tests use a fake of the same protocol.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import InvalidKeyError, KeyNotFoundError
from nats.js.kv import KeyValue, _is_key_valid

from services.eventlog import DELIVERIES_BUCKET
from services.eventlog.direct import consistent_key_value, read_key_direct
from services.eventlog.retry import retrying


@dataclass(frozen=True)
class DeliveryRecord:
    """The attempt that was accepted, the server's reply (addresses removed), and when."""

    attempt: int
    reply: str
    at: datetime | None = None  # when it was written; only informative


class DeliveryRecords(Protocol):
    """The notifier's memory of accepted deliveries, keyed by notification id."""

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        """The record of an accepted delivery, or None when there is none."""
        ...

    async def put(self, notification_id: str, record: DeliveryRecord) -> None:
        """Remember an accepted delivery (overwrites: the last accept wins)."""
        ...


def encode_record(record: DeliveryRecord) -> bytes:
    """The stored form: `{"attempt": n, "reply": "...", "at": "<ISO time>"}` as JSON."""
    at = record.at.isoformat() if record.at is not None else None
    return json.dumps({"attempt": record.attempt, "reply": record.reply, "at": at}).encode()


def decode_record(value: bytes) -> DeliveryRecord:
    """The record in the stored form (only `attempt` and `reply` are relied on)."""
    raw = json.loads(value)
    at = raw.get("at")
    return DeliveryRecord(
        attempt=int(raw["attempt"]),
        reply=str(raw["reply"]),
        at=datetime.fromisoformat(at) if isinstance(at, str) else None,
    )


class JetStreamDeliveryRecords:
    """`DeliveryRecords` in the DOORALERT_DELIVERIES key-value bucket.

    Both operations ride out a cluster failover like a publish does (`retrying`): a record
    lost after the server accepted the email would mean a second email on redelivery.
    """

    def __init__(self, js: JetStreamContext, *, retry_for: float) -> None:
        self.js = js
        self.retry_for = retry_for
        self._kv: KeyValue | None = None
        self._binding = asyncio.Lock()  # one bucket lookup, however many ask at first

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            async with self._binding:
                if self._kv is None:
                    self._kv = await consistent_key_value(self.js, DELIVERIES_BUCKET)
        return self._kv

    async def get(self, notification_id: str) -> DeliveryRecord | None:
        kv = await self._bucket()

        async def lookup() -> bytes | None:
            if getattr(kv, "_direct", False) and _is_key_valid(notification_id):
                # The bucket's reads are direct gets (one replica: ConsistentKeyValue).
                try:
                    return await read_key_direct(kv, notification_id)
                except NoRespondersError:
                    pass  # direct gets turned off: kv.get asks the leader from now on
            try:
                return (await kv.get(notification_id)).value
            except KeyNotFoundError:
                return None

        value = await retrying(lookup, retry_for=self.retry_for, what="delivery_record.get")
        if not value:
            return None
        return decode_record(value)

    async def put(self, notification_id: str, record: DeliveryRecord) -> None:
        kv = await self._bucket()
        value = encode_record(record)
        await retrying(
            lambda: kv.put(notification_id, value),
            retry_for=self.retry_for,
            what="delivery_record.put",
        )

    async def put_publish(
        self, notification_id: str, record: DeliveryRecord
    ) -> tuple[str, bytes, dict[str, str], Callable[[], Awaitable[PubAck]]]:
        """`put` as one publish for `send_together` (the notifier's handler sends it with the
        `notification.sent` event in one flush): the key's subject in the bucket, the stored
        form, and `put`'s own retrying publish for any answer but its PubAck."""
        if not _is_key_valid(notification_id):
            raise InvalidKeyError(notification_id)
        kv = await self._bucket()
        subject = f"{getattr(kv, '_pre', f'$KV.{DELIVERIES_BUCKET}.')}{notification_id}"
        value = encode_record(record)
        start = time.monotonic()

        def retry() -> Awaitable[PubAck]:
            left = max(0.0, self.retry_for - (time.monotonic() - start))
            return retrying(
                lambda: self.js.publish(subject, value),
                retry_for=left,
                what="delivery_record.put",
            )

        return subject, value, {}, retry
