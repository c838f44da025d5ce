"""The notifier's lean requests (services/eventlog/request.py) against a real nats-server:
the same answers and errors as nats-py's own `request` and direct gets, and the delivery
records read through them (deleted and purged keys absent, a bucket without direct gets read
from the leader)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from services.eventlog import DELIVERIES_BUCKET, STREAM, connect, provision
from services.eventlog.request import direct_last, request
from services.notifier import records as records_module
from services.notifier.records import DeliveryRecord, JetStreamDeliveryRecords
from tests.support import NatsServer


async def _client(nats_server: NatsServer) -> tuple[Client, JetStreamContext]:
    nc = await connect(nats_server.url, name="lean")
    js = nc.jetstream()
    await provision(js)
    return nc, js


async def test_a_request_gets_its_own_answer_like_nats_pys_request(
    nats_server: NatsServer,
) -> None:
    nc, _ = await _client(nats_server)
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(b"echo:" + msg.data)

        await nc.subscribe("lean.echo", cb=echo)
        # Interleaved with nats-py's own requests on the same reply inbox.
        own = await nc.request("lean.echo", b"0", timeout=2)
        answers = [await request(nc, "lean.echo", str(i).encode(), timeout=2) for i in range(5)]
        assert own.data == b"echo:0"
        assert [a.data for a in answers] == [f"echo:{i}".encode() for i in range(5)]
        assert not nc._resp_map  # every token removed once answered
    finally:
        await nc.close()


async def test_no_responders_and_no_answer_raise_as_nats_py_does(
    nats_server: NatsServer,
) -> None:
    nc, _ = await _client(nats_server)
    try:
        with pytest.raises(NoRespondersError):
            await request(nc, "lean.nobody", b"", timeout=2)

        async def silent(msg: Msg) -> None:
            return None

        await nc.subscribe("lean.silent", cb=silent)
        with pytest.raises(NatsTimeoutError):
            await request(nc, "lean.silent", b"", timeout=0.2)
        assert not nc._resp_map
    finally:
        await nc.close()


async def test_direct_last_reads_what_nats_pys_direct_get_reads(nats_server: NatsServer) -> None:
    nc, js = await _client(nats_server)
    try:
        subject = "dooralert.hamline.inc-1.encounter.reported"
        await js.publish(subject, b"first", stream=STREAM)
        await js.publish(subject, b"second", stream=STREAM, headers={"X-Test": "1"})
        data, headers = await direct_last(js, STREAM, subject)
        theirs = await js.get_last_msg(STREAM, subject, direct=True)
        assert data == theirs.data == b"second"
        assert headers["X-Test"] == "1" and headers["Nats-Subject"] == subject
        with pytest.raises(NotFoundError):
            await direct_last(js, STREAM, "dooralert.hamline.inc-2.encounter.reported")
        # A stream that does not allow direct gets has no responder for them.
        cfg: StreamConfig = (await js.stream_info(STREAM)).config
        await js.update_stream(dataclasses.replace(cfg, allow_direct=False))
        with pytest.raises(NoRespondersError):
            await direct_last(js, STREAM, subject)
    finally:
        await nc.close()


async def test_delivery_records_read_by_direct_get_deleted_and_purged_are_absent(
    nats_server: NatsServer,
) -> None:
    nc, js = await _client(nats_server)
    try:
        records = JetStreamDeliveryRecords(js, retry_for=2.0)
        at = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
        assert await records.get("n-1") is None
        await records.put("n-1", DeliveryRecord(2, "250 OK", at=at))
        await records.put("n-2", DeliveryRecord(1, "250 queued", at=at))
        assert await records.get("n-1") == DeliveryRecord(2, "250 OK", at=at)
        kv = await js.key_value(DELIVERIES_BUCKET)
        await kv.delete("n-1")
        await kv.purge("n-2")
        assert await records.get("n-1") is None
        assert await records.get("n-2") is None
        await records.put("n-3", DeliveryRecord(1, "250 OK", at=at))
        # Direct gets turned off (replicas raised by provision): read from the leader.
        cfg: StreamConfig = (await js.stream_info(f"KV_{DELIVERIES_BUCKET}")).config
        await js.update_stream(dataclasses.replace(cfg, allow_direct=False))
        assert await records.get("n-3") == DeliveryRecord(1, "250 OK", at=at)
        assert await records.get("n-4") is None
    finally:
        await nc.close()


async def test_records_asked_at_once_on_first_use_look_the_bucket_up_once(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notifier's first burst: every handler reads a record at once; one bucket lookup
    (a STREAM.INFO) serves them all, and a lookup that failed is tried again next time."""
    nc, js = await _client(nats_server)
    lookups: list[str] = []
    real = records_module.consistent_key_value

    async def counted(js: JetStreamContext, bucket: str) -> object:
        lookups.append(bucket)
        if len(lookups) == 1:
            raise NatsTimeoutError  # the first lookup fails: the next call looks again
        return await real(js, bucket)

    monkeypatch.setattr(records_module, "consistent_key_value", counted)
    try:
        records = JetStreamDeliveryRecords(js, retry_for=0.0)
        with pytest.raises(NatsTimeoutError):
            await records.get("n-0")
        found = await asyncio.gather(*(records.get(f"n-{i}") for i in range(16)))
        assert found == [None] * 16
        assert lookups == [DELIVERIES_BUCKET, DELIVERIES_BUCKET]
    finally:
        await nc.close()


async def test_a_client_without_the_internals_is_asked_through_its_own_request() -> None:
    class OtherClient:
        async def request(self, subject: str, payload: bytes, timeout: float) -> Msg:
            return Msg(None, subject=subject, data=b"theirs:" + payload)  # type: ignore[arg-type]

    got = await request(OtherClient(), "x", b"1", timeout=1)  # type: ignore[arg-type]
    assert got.data == b"theirs:1"
