"""`dooralert provision` against a real nats-server: idempotent, and never weakens a stream."""

from __future__ import annotations

import dataclasses

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from services.eventlog import STREAM, ProvisionError, connect, provision


async def test_provision_is_idempotent_and_sets_the_contract(nats_server):
    nc = await connect(nats_server.url, name="t")
    js = nc.jetstream()
    first = await provision(js)
    second = await provision(js)
    assert any(a.startswith("created stream DOORALERT") for a in first)
    assert "stream DOORALERT ok" in second
    cfg = (await js.stream_info(STREAM)).config
    assert cfg.deny_delete and cfg.deny_purge and not cfg.allow_rollup_hdrs
    assert cfg.duplicate_window >= 600 and not cfg.max_age
    assert (await js.stream_info("DOORALERT_TIMERS")).config.allow_msg_schedules
    await nc.close()


async def test_provision_refuses_to_weaken_an_existing_stream(nats_server):
    nc = await connect(nats_server.url, name="t")
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=["dooralert.>"],
            deny_delete=True,
            deny_purge=True,
            duplicate_window=7200,
        )
    )
    with pytest.raises(ProvisionError, match="duplicate_window would shrink"):
        await provision(js)
    assert (await js.stream_info(STREAM)).config.duplicate_window == 7200
    await nc.close()


async def test_provision_keeps_an_operators_retention(nats_server):
    nc = await connect(nats_server.url, name="t")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["dooralert.>"], max_age=86400 * 365))
    await provision(js)
    cfg = (await js.stream_info(STREAM)).config
    assert cfg.max_age == 86400 * 365 and cfg.deny_delete
    await nc.close()


async def _admin(nats_server):
    nc = await connect(nats_server.url, name="t")
    js = nc.jetstream()
    await provision(js)
    return nc, js


async def test_provision_resumes_a_paused_consumer_and_says_until_when(nats_server):
    nc, js = await _admin(nats_server)
    await js.pause_consumer(STREAM, "router", "2099-01-01T00:00:00Z")
    lines = await provision(js)
    assert "consumer router was paused until 2099-01-01T00:00:00Z: resumed" in lines
    assert not (await js.consumer_info(STREAM, "router")).paused
    assert "consumer router ok" in await provision(js)
    await nc.close()


async def test_provision_recreates_a_deleted_consumer_that_redelivers_what_arrived_meanwhile(
    nats_server,
):
    nc, js = await _admin(nats_server)
    await js.delete_consumer(STREAM, "notifier")
    await js.publish("dooralert.s.i1.notification.requested", b"{}")
    lines = await provision(js)
    assert any(line.startswith("consumer notifier was missing: recreated") for line in lines)
    info = await js.consumer_info(STREAM, "notifier")
    assert info.num_pending == 1  # the request stored while it was gone is not lost
    assert "consumer notifier ok" in await provision(js)  # the restored start is accepted
    await nc.close()


async def test_provision_updates_a_consumer_whose_limits_were_changed_keeping_its_position(
    nats_server,
):
    nc, js = await _admin(nats_server)
    await js.publish("dooralert.s.i1.encounter.reported", b"{}")
    sub = await js.pull_subscribe_bind("router", stream=STREAM)
    (msg,) = await sub.fetch(1, timeout=2)
    await msg.ack_sync()
    have = (await js.consumer_info(STREAM, "router")).config
    await js.add_consumer(STREAM, dataclasses.replace(have, ack_wait=1.0, max_deliver=1))
    lines = await provision(js)
    assert any(
        line.startswith("consumer router was redefined (ack_wait is 1.0 s (contract: 30.0 s)")
        and "max_deliver is 1" in line
        and line.endswith(": updated")
        for line in lines
    ), lines
    info = await js.consumer_info(STREAM, "router")
    assert info.config.ack_wait == 30.0 and info.config.max_deliver == 20
    assert info.ack_floor.stream_seq == 1  # the acknowledged report is not redelivered
    await nc.close()


async def test_provision_recreates_a_consumer_whose_filter_was_redirected(nats_server):
    nc, js = await _admin(nats_server)
    have = (await js.consumer_info(STREAM, "router")).config
    await js.add_consumer(STREAM, dataclasses.replace(have, filter_subject="dooralert.nothing"))
    await js.publish("dooralert.s.i1.encounter.reported", b"{}")
    lines = await provision(js)
    assert any(
        line.startswith("consumer router was redefined (filter subjects are ['dooralert.nothing']")
        and "deleted and recreated" in line
        for line in lines
    ), lines
    info = await js.consumer_info(STREAM, "router")
    assert info.config.filter_subject == "dooralert.*.*.encounter.reported"
    assert info.num_pending == 1  # the report the redirected consumer skipped comes back
    await nc.close()


async def test_provision_recreates_a_consumer_whose_ack_policy_was_changed(nats_server):
    nc, js = await _admin(nats_server)
    have = (await js.consumer_info(STREAM, "router-followups")).config
    await js.delete_consumer(STREAM, "router-followups")
    await js.add_consumer(STREAM, dataclasses.replace(have, ack_policy=AckPolicy.NONE))
    lines = await provision(js)
    assert any("ack policy is none (contract: explicit)" in line for line in lines), lines
    info = await js.consumer_info(STREAM, "router-followups")
    assert info.config.ack_policy == AckPolicy.EXPLICIT
    await nc.close()


async def test_provision_warns_about_an_unknown_durable_consumer(nats_server):
    nc, js = await _admin(nats_server)
    await js.add_consumer(
        STREAM, ConsumerConfig(durable_name="lurker", filter_subject="dooralert.>")
    )
    lines = await provision(js)
    assert any(
        line.startswith("warning: unknown durable consumer lurker on DOORALERT") for line in lines
    ), lines
    await nc.close()


async def test_provision_restores_a_weakened_duplicate_window(nats_server):
    nc, js = await _admin(nats_server)
    have = (await js.stream_info(STREAM)).config
    await js.update_stream(dataclasses.replace(have, duplicate_window=60))
    lines = await provision(js)
    assert any(
        line.startswith("stream DOORALERT was weakened (duplicate_window is 60.0s")
        for line in lines
    ), lines
    assert (await js.stream_info(STREAM)).config.duplicate_window == 3600
    await nc.close()
