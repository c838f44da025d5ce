"""Direct gets against a real nats-server: `dooralert provision` turns them on in place for an
existing deployment (its data kept), reads by direct get return what the leader would, and a
notes key forgotten (purged) reads as absent; the notes keys turn to the stream leader when
direct gets are turned off under a running service."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import KeyNotFoundError

from schemas.events import serialize_event
from services.eventlog import (
    DELIVERIES_BUCKET,
    NOTE_KEYS_BUCKET,
    STREAM,
    JetStreamEventLog,
    JetStreamNoteKeys,
    connect,
    provision,
)
from services.eventlog.contract import SESSIONS_BUCKET
from services.eventlog.direct import leader_checked_key_value
from services.intake.reports import encounter_event, parse_report
from tests.cluster_support import NatsCluster, provision_replicated
from tests.support import NatsServer, report

SCHOOL = "hamline"


async def _set_direct(js: JetStreamContext, stream: str, on: bool) -> None:
    cfg: StreamConfig = (await js.stream_info(stream)).config
    await js.update_stream(dataclasses.replace(cfg, allow_direct=on))


async def _direct(js: JetStreamContext, stream: str) -> bool:
    return bool((await js.stream_info(stream)).config.allow_direct)


async def test_provision_turns_direct_gets_on_in_place_keeping_the_data(
    nats_server: NatsServer,
) -> None:
    nc = await connect(nats_server.url, name="t")
    js = nc.jetstream()
    await provision(js)
    # A deployment provisioned before direct gets: nothing allows them.
    await _set_direct(js, STREAM, False)
    await _set_direct(js, f"KV_{NOTE_KEYS_BUCKET}", False)
    await _set_direct(js, f"KV_{DELIVERIES_BUCKET}", False)
    log = JetStreamEventLog(js)
    now = datetime.now(UTC)
    event = encounter_event(
        parse_report(report(), now=now), incident_id="inc-1", actor="key-hamline", now=now
    )
    await log.append(event)
    keys = await JetStreamNoteKeys.open(js)
    await keys.create_if_absent(event.incident_id, b"k" * 32)
    before = (await js.stream_info(STREAM)).state.messages

    # Reads still work before the upgrade (from the leader, direct gets have no responder).
    assert await log.last(SCHOOL, event.incident_id, "encounter.reported") == serialize_event(event)
    assert log._last.fallback_unavailable == 1 and log._last.direct == 0

    actions = await provision(js)
    assert "updated stream DOORALERT" in actions
    assert f"updated bucket {NOTE_KEYS_BUCKET} (direct gets on)" in actions
    assert f"updated bucket {DELIVERIES_BUCKET} (direct gets on)" in actions
    assert await _direct(js, STREAM) and await _direct(js, f"KV_{NOTE_KEYS_BUCKET}")
    assert not await _direct(js, f"KV_{SESSIONS_BUCKET}")
    assert (await js.stream_info(STREAM)).state.messages == before
    # Idempotent.
    again = await provision(js)
    assert "stream DOORALERT ok" in again and f"bucket {NOTE_KEYS_BUCKET} ok" in again

    fresh = JetStreamEventLog(js)
    assert await fresh.last(SCHOOL, event.incident_id, "encounter.reported") == serialize_event(
        event
    )
    assert fresh._last.direct == 1 and fresh._last.fallback_not_found == 0
    # One server, no cluster: its "not found" is the only copy's, not asked again.
    assert await fresh.last(SCHOOL, "no-such-incident", "encounter.reported") is None
    assert fresh._last.fallback_not_found == 0
    reopened = await JetStreamNoteKeys.open(js)
    assert reopened.kv._direct
    assert await reopened.get(event.incident_id) == b"k" * 32
    await nc.close()


async def test_provision_keeps_direct_gets_to_one_replica_for_the_delivery_records(
    nats_server: NatsServer,
) -> None:
    nc = await connect(nats_server.url, name="t")
    js = nc.jetstream()
    await provision(js)
    # One replica: the one that answers a direct get is the leader.
    assert await _direct(js, f"KV_{DELIVERIES_BUCKET}")
    await _set_direct(js, f"KV_{DELIVERIES_BUCKET}", False)
    await _set_direct(js, f"KV_{SESSIONS_BUCKET}", True)
    actions = await provision(js)
    assert f"updated bucket {DELIVERIES_BUCKET} (direct gets on)" in actions
    assert (
        f"updated bucket {SESSIONS_BUCKET} (direct gets off: reads from the stream leader)"
        in actions
    )
    assert await _direct(js, f"KV_{DELIVERIES_BUCKET}")
    assert not await _direct(js, f"KV_{SESSIONS_BUCKET}")
    await nc.close()


async def test_a_forgotten_notes_key_reads_absent_by_direct_get(js: JetStreamContext) -> None:
    keys = await JetStreamNoteKeys.open(js)
    checked = await leader_checked_key_value(js, NOTE_KEYS_BUCKET)
    assert keys.kv._direct and checked._direct
    assert await keys.create_if_absent("i-1", b"a" * 32, likely_new=True) == b"a" * 32
    assert await keys.get("i-1") == b"a" * 32
    assert (await checked.get("i-1")).value == b"a" * 32

    assert await keys.forget("i-1")
    assert await keys.get("i-1") is None
    assert not await keys.forget("i-1")
    raw = await js.get_last_msg(
        f"KV_{NOTE_KEYS_BUCKET}", f"$KV.{NOTE_KEYS_BUCKET}.i-1", direct=True
    )
    assert raw.headers is not None and raw.headers.get("KV-Operation") == "PURGE"
    assert not raw.data
    with pytest.raises(KeyNotFoundError):  # nats-py turns a purge marker into this
        await checked.get("i-1")
    # Made again after it was forgotten (a tombstone): create handles it through _get.
    assert await keys.create_if_absent("i-1", b"b" * 32) == b"b" * 32
    assert await keys.get("i-1") == b"b" * 32


async def test_notes_keys_are_read_by_direct_get_without_the_kv_entry(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one replica (the leader answers direct gets), `get` reads the key's last message
    itself: the same answers as nats-py's KeyValue.get, present, absent and forgotten."""
    keys = await JetStreamNoteKeys.open(js)
    assert await keys.create_if_absent("lean-1", b"k" * 32, likely_new=True) == b"k" * 32
    assert await keys.create_if_absent("lean-2", b"j" * 32, likely_new=True) == b"j" * 32
    assert await keys.forget("lean-2")

    async def not_used(*args: object, **kwargs: object) -> None:
        raise AssertionError("KeyValue.get used")

    monkeypatch.setattr(keys.kv, "get", not_used)
    assert await keys.get("lean-1") == b"k" * 32
    assert await keys.get("lean-2") is None  # forgotten: a purge marker
    assert await keys.get("lean-never") is None
    monkeypatch.undo()
    assert await keys.get("lean-1") == (await keys.kv.get("lean-1")).value
    with pytest.raises(KeyNotFoundError):
        await keys.kv.get("lean-2")

    # Bound through the leader check (replicas raised, direct.py), reads keep that check.
    checked = JetStreamNoteKeys(await leader_checked_key_value(js, NOTE_KEYS_BUCKET))
    called: list[str] = []
    real_get = checked.kv.get

    async def counted(key: str) -> object:
        called.append(key)
        return await real_get(key)

    monkeypatch.setattr(checked.kv, "get", counted)
    assert await checked.get("lean-1") == b"k" * 32
    assert called == ["lean-1"]


async def test_in_a_cluster_a_direct_not_found_is_asked_again_of_the_leader(
    tmp_path: Path,
) -> None:
    cluster = NatsCluster(tmp_path / "cluster")
    cluster.start()
    try:
        await cluster.wait_for_meta_leader()
        nc = await connect(cluster.url, name="t")
        await provision_replicated(nc)
        js = nc.jetstream()
        assert await _direct(js, STREAM)
        # Three replicas: notes keys stay leader-only until notekeys.py checks with the
        # leader; delivery records and sessions always.
        assert not await _direct(js, f"KV_{NOTE_KEYS_BUCKET}")
        assert not await _direct(js, f"KV_{DELIVERIES_BUCKET}")
        assert not await _direct(js, f"KV_{SESSIONS_BUCKET}")
        log = JetStreamEventLog(js)
        now = datetime.now(UTC)
        event = encounter_event(
            parse_report(report(), now=now), incident_id="inc-1", actor="key-hamline", now=now
        )
        await log.append(event)
        assert await log.last(SCHOOL, "inc-1", "encounter.reported") == serialize_event(event)
        assert await log.last(SCHOOL, "inc-2", "encounter.reported") is None
        assert log._last.fallback_not_found == 1
        checked = await leader_checked_key_value(js, NOTE_KEYS_BUCKET)
        await checked.put("k1", b"v")
        checked._direct = True  # as if the bucket allowed direct gets
        await _set_direct(js, f"KV_{NOTE_KEYS_BUCKET}", True)
        assert (await checked.get("k1")).value == b"v"
        with pytest.raises(KeyNotFoundError):
            await checked.get("k2")
        await nc.close()
    finally:
        cluster.stop()


async def test_notes_keys_are_read_from_the_leader_once_direct_gets_are_turned_off(
    js: JetStreamContext,
) -> None:
    """Bound while the bucket allowed direct gets, then an operator (or a provision adding
    replicas) turned them off: the keys are read, made and forgotten through the stream
    leader from then on, without a restart (before: every read failed, and alerts went out
    without their notes, until the notifier restarted)."""
    keys = await JetStreamNoteKeys.open(js, retry_for=1.0)
    assert keys.kv._direct
    assert await keys.create_if_absent("i-off", b"a" * 32, likely_new=True) == b"a" * 32
    await _set_direct(js, f"KV_{NOTE_KEYS_BUCKET}", False)
    try:
        assert await keys.get("i-off") == b"a" * 32
        assert not keys.kv._direct
        assert await keys.get("i-absent") is None
        assert await keys.create_if_absent("i-off", b"b" * 32) == b"a" * 32  # kept
        assert await keys.create_if_absent("i-new", b"c" * 32) == b"c" * 32
        assert await keys.get("i-new") == b"c" * 32
        assert await keys.forget("i-off")
        assert await keys.get("i-off") is None
    finally:
        await _set_direct(js, f"KV_{NOTE_KEYS_BUCKET}", True)


async def test_a_forgotten_notes_key_is_made_again_once_direct_gets_are_turned_off(
    js: JetStreamContext,
) -> None:
    """Intake makes a report's key without reading first (`likely_new`); over a tombstone
    nats-py's create reads it, which found no responder with direct gets off."""
    keys = await JetStreamNoteKeys.open(js, retry_for=1.0)
    assert await keys.create_if_absent("i-again", b"a" * 32, likely_new=True) == b"a" * 32
    assert await keys.forget("i-again")
    await _set_direct(js, f"KV_{NOTE_KEYS_BUCKET}", False)
    try:
        made = await keys.create_if_absent("i-again", b"b" * 32, likely_new=True)
        assert made == b"b" * 32
        assert await keys.get("i-again") == b"b" * 32
        assert not keys.kv._direct
    finally:
        await _set_direct(js, f"KV_{NOTE_KEYS_BUCKET}", True)


async def test_a_bucket_read_from_the_leader_goes_back_to_direct_gets_once_they_answer(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "no responders" may be passing (a server loading its streams after a restart): after
    a while the bucket's config is asked again, and direct gets are used again only if it
    still allows them with one replica."""
    from services.eventlog import direct as direct_module

    monkeypatch.setattr(direct_module, "DIRECT_RETRY_AFTER_S", 0.0)  # "a while" has passed
    kv = await direct_module.consistent_key_value(js, DELIVERIES_BUCKET)
    assert isinstance(kv, direct_module.ConsistentKeyValue) and kv._direct
    await kv.put("n-back", b"record")
    stream = f"KV_{DELIVERIES_BUCKET}"
    infos: list[str] = []
    stream_info = js.stream_info

    async def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        infos.append(name)
        return await stream_info(name, *args, **kwargs)

    monkeypatch.setattr(js, "stream_info", counted)
    await _set_direct(js, stream, False)
    infos.clear()  # (_set_direct's own)
    try:
        assert (await kv.get("n-back")).value == b"record"  # no responders: the leader
        assert not kv._direct and infos == []
        assert (await kv.get("n-back")).value == b"record"  # asked again: still off
        assert not kv._direct and infos == [stream]
    finally:
        await _set_direct(js, stream, True)
    infos.clear()
    assert (await kv.get("n-back")).value == b"record"
    assert kv._direct and infos == [stream]  # on again, and direct gets answer
    assert (await kv.get("n-back")).value == b"record"
    assert infos == [stream]  # and no more asking


async def test_a_bucket_bound_leader_only_never_turns_to_direct_gets(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.eventlog import direct as direct_module

    monkeypatch.setattr(direct_module, "DIRECT_RETRY_AFTER_S", 0.0)
    stream = f"KV_{DELIVERIES_BUCKET}"
    await _set_direct(js, stream, False)
    try:
        kv = await direct_module.consistent_key_value(js, DELIVERIES_BUCKET)
    finally:
        await _set_direct(js, stream, True)
    await kv.put("n-leader", b"record")
    assert (await kv.get("n-leader")).value == b"record"
    assert not kv._direct  # bound without them (more replicas, or off): the leader for good
