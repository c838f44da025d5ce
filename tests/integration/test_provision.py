"""`dooralert provision` against a real nats-server: idempotent, and never weakens a stream."""

from __future__ import annotations

import pytest
from nats.js.api import StreamConfig

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
