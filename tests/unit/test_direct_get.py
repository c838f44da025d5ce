"""Direct gets (services/eventlog/direct.py): a "not found" from whichever replica answered is
asked again of the stream leader; a stream without direct gets is read from the leader."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from nats.errors import NoRespondersError
from nats.js.errors import KeyNotFoundError, NotFoundError

from services.eventlog import direct
from services.eventlog.contract import (
    DELIVERIES_BUCKET,
    NOTE_KEYS_BUCKET,
    SESSIONS_BUCKET,
    STREAM,
    bucket_allows_direct,
    stream_configs,
)
from services.eventlog.direct import DirectLast, LeaderCheckedKeyValue


class LaggingJetStream:
    """A stream whose direct gets are answered by a replica that has not got `lagging` yet
    (or by nobody: `no_direct`), while the leader has everything in `stored`."""

    def __init__(self, *, lagging: frozenset[str] = frozenset(), no_direct: bool = False) -> None:
        self.stored: dict[str, bytes] = {}
        self.lagging = set(lagging)
        self.no_direct = no_direct
        self.calls: list[tuple[str, bool]] = []

    async def get_msg(
        self,
        stream_name: str,
        seq: int | None = None,
        subject: str | None = None,
        direct: bool = False,
    ) -> Any:
        assert subject is not None
        self.calls.append((subject, bool(direct)))
        if direct and self.no_direct:
            raise NoRespondersError
        if subject not in self.stored or (direct and subject in self.lagging):
            raise NotFoundError
        return SimpleNamespace(subject=subject, data=self.stored[subject], seq=1, headers=None)

    async def get_last_msg(self, stream_name: str, subject: str, direct: bool = False) -> Any:
        return await self.get_msg(stream_name, subject=subject, direct=direct)


async def test_a_found_message_is_read_directly_once() -> None:
    js = LaggingJetStream()
    js.stored["a"] = b"report"
    reader = DirectLast(js, STREAM)  # type: ignore[arg-type]
    assert await reader.get("a") == b"report"
    assert js.calls == [("a", True)] and reader.direct == 1


async def test_a_lagging_replicas_not_found_is_asked_again_of_the_leader() -> None:
    js = LaggingJetStream(lagging={"a"})
    js.stored["a"] = b"report"
    reader = DirectLast(js, STREAM)  # type: ignore[arg-type]
    assert await reader.get("a") == b"report"
    assert js.calls == [("a", True), ("a", False)] and reader.fallback_not_found == 1
    # Absent at the leader too: None.
    assert await reader.get("b") is None


async def test_a_stream_without_direct_gets_is_read_from_the_leader_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    js = LaggingJetStream(no_direct=True)
    js.stored["a"] = b"report"
    reader = DirectLast(js, STREAM)  # type: ignore[arg-type]
    now = [1000.0]
    monkeypatch.setattr(direct.time, "monotonic", lambda: now[0])
    assert await reader.get("a") == b"report"
    assert await reader.get("a") == b"report"
    assert js.calls == [("a", True), ("a", False), ("a", False)]
    js.no_direct = False  # provisioned meanwhile
    now[0] += direct.DIRECT_RETRY_AFTER_S
    assert await reader.get("a") == b"report"
    assert js.calls[-1] == ("a", True)


async def test_a_key_a_lagging_replica_lacks_is_read_from_the_leader() -> None:
    js = LaggingJetStream(lagging={"$KV.B.k"})
    js.stored["$KV.B.k"] = b"key"
    kv = LeaderCheckedKeyValue(name="B", stream="KV_B", pre="$KV.B.", js=js, direct=True)  # type: ignore[arg-type]
    assert (await kv.get("k")).value == b"key"
    assert js.calls == [("$KV.B.k", True), ("$KV.B.k", False)]
    with pytest.raises(KeyNotFoundError):
        await kv.get("gone")
    js.calls.clear()
    js.lagging.clear()
    assert (await kv.get("k")).value == b"key"
    assert js.calls == [("$KV.B.k", True)]


def test_only_immutable_reads_may_be_answered_by_any_replica() -> None:
    assert next(c for c in stream_configs(3) if c.name == STREAM).allow_direct
    for replicas in (1, 3):
        assert not bucket_allows_direct(SESSIONS_BUCKET, replicas)
    # The duplicate check: only where the one replica answering is the leader.
    assert bucket_allows_direct(DELIVERIES_BUCKET, 1)
    assert not bucket_allows_direct(DELIVERIES_BUCKET, 3)
    assert bucket_allows_direct(NOTE_KEYS_BUCKET, 1)
    # Until notekeys.py reads through leader_checked_key_value.
    assert bucket_allows_direct(NOTE_KEYS_BUCKET, 3) is direct_allowed_for_replicated_keys()


def direct_allowed_for_replicated_keys() -> bool:
    from services.eventlog import contract

    return contract.NOTE_KEYS_READERS_LEADER_CHECKED


async def test_on_a_single_server_a_direct_not_found_is_final() -> None:
    js = LaggingJetStream()
    js._nc = SimpleNamespace(_server_info={"jetstream": True})  # type: ignore[attr-defined]
    reader = DirectLast(js, STREAM)  # type: ignore[arg-type]
    assert await reader.get("a") is None
    assert js.calls == [("a", True)]
    kv = LeaderCheckedKeyValue(name="B", stream="KV_B", pre="$KV.B.", js=js, direct=True)  # type: ignore[arg-type]
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    assert js.calls[-1] == ("$KV.B.k", True) and len(js.calls) == 2
    # In a cluster it is asked again.
    js._nc._server_info["cluster"] = "dooralert"  # type: ignore[attr-defined]
    assert await reader.get("a") is None
    assert js.calls[-2:] == [("a", True), ("a", False)]


async def test_a_bucket_whose_direct_gets_were_turned_off_is_read_from_the_leader() -> None:
    js = LaggingJetStream(no_direct=True)
    js.stored["$KV.B.k"] = b"key"
    kv = LeaderCheckedKeyValue(name="B", stream="KV_B", pre="$KV.B.", js=js, direct=True)  # type: ignore[arg-type]
    assert (await kv.get("k")).value == b"key"
    assert (await kv.get("k")).value == b"key"
    assert js.calls == [("$KV.B.k", True), ("$KV.B.k", False), ("$KV.B.k", False)]


async def test_delivery_records_fall_back_to_the_leader_when_direct_gets_stop_answering() -> None:
    # provision turns direct gets off on the records bucket when its replicas are raised: a
    # running notifier must read from the leader from then on, not fail every email.
    js = LaggingJetStream(no_direct=True)
    js.stored["$KV.B.k"] = b"record"
    kv = direct.ConsistentKeyValue(name="B", stream="KV_B", pre="$KV.B.", js=js, direct=True)  # type: ignore[arg-type]
    assert (await kv.get("k")).value == b"record"
    assert (await kv.get("k")).value == b"record"
    assert js.calls == [("$KV.B.k", True), ("$KV.B.k", False), ("$KV.B.k", False)]


async def test_delivery_records_are_read_directly_only_with_one_replica() -> None:
    class Bound(LaggingJetStream):
        replicas = 3

        async def key_value(self, bucket: str) -> Any:
            return SimpleNamespace(
                _name=bucket, _stream="KV_" + bucket, _pre="$KV.B.", _direct=True
            )

        async def stream_info(self, name: str) -> Any:
            return SimpleNamespace(config=SimpleNamespace(num_replicas=self.replicas))

    js = Bound()
    assert not (await direct.consistent_key_value(js, "B"))._direct  # type: ignore[arg-type]
    js.replicas = 1
    assert (await direct.consistent_key_value(js, "B"))._direct  # type: ignore[arg-type]
