"""`dooralert provision`: create or strengthen the contract's streams, consumers and bucket,
and repair drift: a paused consumer is resumed, a deleted one recreated, a redefined one
updated or recreated, a weakened stream strengthened. Each line it returns says what it found
and did.

Only this module changes stream or consumer config; services bind and never declare.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    KeyValueConfig,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from services.eventlog.contract import (
    DELIVERIES_BUCKET,
    NOTE_KEYS_BUCKET,
    REDELIVER_SECONDS,
    RESTORED_KEY,
    SESSIONS_BUCKET,
    bucket_allows_direct,
    check_consumer,
    consumer_configs,
    differs,
    stream_configs,
    weakened,
    weakenings,
)


class ProvisionError(Exception):
    """An existing stream differs from the contract in a way provisioning will not weaken."""


# The longest a staff session can live (DOORALERT_SESSION_LIFETIME_SECONDS' default).
DEFAULT_SESSION_TTL = 30 * 24 * 3600.0
# How long sealed notes stay readable (DOORALERT_NOTES_RETENTION_DAYS' default: 90 days).
DEFAULT_NOTES_RETENTION = 90 * 24 * 3600.0


async def provision(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    session_ttl: float = DEFAULT_SESSION_TTL,
    notes_retention: float = DEFAULT_NOTES_RETENTION,
) -> list[str]:
    """Create or strengthen the streams, consumers and KV buckets, repairing drift. Idempotent."""
    actions = await _streams(js, replicas)
    created = {a.removeprefix("created stream ") for a in actions if a.startswith("created")}
    now = datetime.now(UTC)
    for stream, consumer in consumer_configs():
        if stream in created:
            await js.add_consumer(stream, consumer)
            actions.append(f"created consumer {consumer.durable_name}")
        else:
            actions += await repair_consumer(js, stream, consumer, now=now)
    actions += await unknown_durables(js)
    actions.append(await _bucket(js, replicas))
    actions.append(await _sessions_bucket(js, replicas=replicas, ttl=session_ttl))
    actions.append(await _note_keys_bucket(js, replicas=replicas, retention=notes_retention))
    return actions


async def _streams(js: JetStreamContext, replicas: int) -> list[str]:
    actions: list[str] = []
    for want in stream_configs(replicas):
        assert want.name is not None
        try:
            info = await js.stream_info(want.name)
        except NotFoundError:
            await js.add_stream(want)
            actions.append(f"created stream {want.name}")
            continue
        have = info.config
        weak = weakenings(have, want)
        if weak:
            raise ProvisionError(
                f"stream {want.name} exists with a stronger config; refusing to weaken it: "
                + "; ".join(weak)
            )
        if differs(have, want):
            found = weakened(have, want)
            # Retention (max_age, max_bytes) is a deploy decision: keep what the operator set.
            want.max_age = have.max_age
            want.max_bytes = have.max_bytes
            try:
                await js.update_stream(want)
            except Exception as exc:
                raise ProvisionError(
                    f"stream {want.name} differs from the contract"
                    + (f" ({'; '.join(found)})" if found else "")
                    + f" and the server refused to restore it: {exc}"
                ) from exc
            if found:
                actions.append(f"stream {want.name} was weakened ({'; '.join(found)}): restored")
            else:
                actions.append(f"updated stream {want.name}")
        else:
            actions.append(f"stream {want.name} ok")
    return actions


async def _info(js: JetStreamContext, stream: str, name: str) -> ConsumerInfo | None:
    try:
        info: ConsumerInfo = await js.consumer_info(stream, name)
    except NotFoundError:
        return None
    return info


def restored_config(want: ConsumerConfig, *, now: datetime) -> ConsumerConfig:
    """The config of a consumer provisioning recreates: it redelivers what was stored in the
    last REDELIVER_SECONDS (inside the duplicate window, where redelivery is harmless), not the
    whole log (which would re-alert every old incident) nor only new messages (which would
    silently drop what arrived while it was gone)."""
    since = now - timedelta(seconds=REDELIVER_SECONDS)
    return dataclasses.replace(
        want,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        metadata={RESTORED_KEY: now.isoformat(timespec="seconds")},
    )


def _kept_position(want: ConsumerConfig, have: ConsumerConfig) -> ConsumerConfig:
    """`want`, keeping what the server will not update in place (how the consumer started)."""
    ours = {k: v for k, v in (have.metadata or {}).items() if not k.startswith("_nats")}
    return dataclasses.replace(
        want,
        deliver_policy=have.deliver_policy,
        opt_start_time=have.opt_start_time,
        opt_start_seq=have.opt_start_seq,
        metadata=ours or None,
    )


async def repair_consumer(
    js: JetStreamContext, stream: str, want: ConsumerConfig, *, now: datetime
) -> list[str]:
    """Bring one durable consumer back to the contract; what was found and done."""
    name = want.durable_name or ""
    info = await _info(js, stream, name)
    check = check_consumer(info, stream, want)
    since = (now - timedelta(seconds=REDELIVER_SECONDS)).isoformat(timespec="seconds")
    redeliver = f"redelivering messages stored since {since}"
    if check.missing:
        await js.add_consumer(stream, restored_config(want, now=now))
        return [f"consumer {name} was missing: recreated, {redeliver}"]
    assert info is not None
    drift = "; ".join(check.drift)
    if check.recreate:
        await js.delete_consumer(stream, name)
        await js.add_consumer(stream, restored_config(want, now=now))
        # A recreated consumer starts unpaused: nothing more to do.
        return [f"consumer {name} was redefined ({drift}): deleted and recreated, {redeliver}"]
    out = []
    if check.drift:
        await js.add_consumer(stream, _kept_position(want, info.config))
        out.append(f"consumer {name} was redefined ({drift}): updated")
    if check.paused_until:
        await js.resume_consumer(stream, name)
        out.append(f"consumer {name} was paused until {check.paused_until}: resumed")
    return out or [f"consumer {name} ok"]


async def unknown_durables(js: JetStreamContext) -> list[str]:
    """A warning for each durable consumer on a contract stream that the contract does not
    name (the server lets a reader create one under a fresh name)."""
    known = {(s, c.durable_name) for s, c in consumer_configs()}
    out = []
    for want in stream_configs():
        assert want.name is not None
        for info in await js.consumers_info(want.name):
            durable = info.config.durable_name
            if durable and (want.name, durable) not in known:
                out.append(
                    f"warning: unknown durable consumer {durable} on {want.name} "
                    f"(filter {info.config.filter_subject or info.config.filter_subjects}, "
                    f"created {info.created:%Y-%m-%d %H:%M}Z): not dooralert's; remove it "
                    f"with `nats consumer rm {want.name} {durable}` unless you made it"
                )
    return out


def _direct_as_contracted(bucket: str, config: StreamConfig, notes: list[str]) -> StreamConfig:
    """`config` with direct gets as contract.bucket_allows_direct says for its replica count;
    a change is noted in `notes`."""
    want = bucket_allows_direct(bucket, config.num_replicas or 1)
    if bool(config.allow_direct) == want:
        return config
    notes.append("direct gets on" if want else "direct gets off: reads from the stream leader")
    return dataclasses.replace(config, allow_direct=want)


async def _bucket(js: JetStreamContext, replicas: int) -> str:
    """The notifier's delivery records: direct gets only with one replica
    (contract.bucket_allows_direct)."""
    try:
        info = await js.stream_info(f"KV_{DELIVERIES_BUCKET}")
    except NotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=DELIVERIES_BUCKET,
                history=1,
                storage=StorageType.FILE,
                replicas=replicas,
                direct=bucket_allows_direct(DELIVERIES_BUCKET, replicas),
            )
        )
        return f"created bucket {DELIVERIES_BUCKET}"
    notes: list[str] = []
    changed = _direct_as_contracted(DELIVERIES_BUCKET, info.config, notes)
    if notes:
        await js.update_stream(changed)
        return f"updated bucket {DELIVERIES_BUCKET} ({'; '.join(notes)})"
    return f"bucket {DELIVERIES_BUCKET} ok"


async def _sessions_bucket(js: JetStreamContext, *, replicas: int, ttl: float) -> str:
    """The signed-out sessions bucket: each record must outlive the session it ends, so its
    TTL is at least the session lifetime (raised, never lowered, on an existing bucket)."""
    try:
        info = await js.stream_info(f"KV_{SESSIONS_BUCKET}")
    except NotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=SESSIONS_BUCKET,
                history=1,
                ttl=ttl,
                storage=StorageType.FILE,
                replicas=replicas,
                direct=bucket_allows_direct(SESSIONS_BUCKET, replicas),
            )
        )
        return f"created bucket {SESSIONS_BUCKET}"
    have = info.config.max_age or 0
    changed, notes = info.config, []
    if 0 < have < ttl:
        changed = dataclasses.replace(changed, max_age=ttl)
        notes.append(f"records kept {ttl:.0f} s")
    changed = _direct_as_contracted(SESSIONS_BUCKET, changed, notes)
    if notes:
        await js.update_stream(changed)
        return f"updated bucket {SESSIONS_BUCKET} ({'; '.join(notes)})"
    return f"bucket {SESSIONS_BUCKET} ok"


async def _note_keys_bucket(js: JetStreamContext, *, replicas: int, retention: float) -> str:
    """The notes keys bucket: its max age IS the notes' retention, so it follows the setting
    both ways (a shorter retention forgets older notes sooner, as the district decided).
    Direct gets as contract.bucket_allows_direct says, for the bucket's replica count."""
    try:
        info = await js.stream_info(f"KV_{NOTE_KEYS_BUCKET}")
    except NotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=NOTE_KEYS_BUCKET,
                history=1,
                ttl=retention,
                storage=StorageType.FILE,
                replicas=replicas,
                direct=bucket_allows_direct(NOTE_KEYS_BUCKET, replicas),
            )
        )
        return f"created bucket {NOTE_KEYS_BUCKET} (keys kept {retention:.0f} s)"
    changed, notes = info.config, []
    if abs((info.config.max_age or 0) - retention) > 0.5:
        # The server refuses a duplicate window longer than the max age.
        window = min(info.config.duplicate_window or retention, retention)
        changed = dataclasses.replace(changed, max_age=retention, duplicate_window=window)
        notes.append(f"keys kept {retention:.0f} s")
    changed = _direct_as_contracted(NOTE_KEYS_BUCKET, changed, notes)
    if notes:
        await js.update_stream(changed)
        return f"updated bucket {NOTE_KEYS_BUCKET} ({'; '.join(notes)})"
    return f"bucket {NOTE_KEYS_BUCKET} ok"
