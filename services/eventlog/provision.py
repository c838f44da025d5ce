"""`dooralert provision`: create or strengthen the contract's streams, consumers and bucket.

Only this module changes stream or consumer config; services bind and never declare.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import NotFoundError

from services.eventlog.contract import (
    DELIVERIES_BUCKET,
    consumer_configs,
    differs,
    stream_configs,
    weakenings,
)


class ProvisionError(Exception):
    """An existing stream differs from the contract in a way provisioning will not weaken."""


async def provision(js: JetStreamContext, *, replicas: int = 1) -> list[str]:
    """Create or strengthen the streams, consumers and KV bucket. Idempotent."""
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
            # Retention (max_age, max_bytes) is a deploy decision: keep what the operator set.
            want.max_age = have.max_age
            want.max_bytes = have.max_bytes
            await js.update_stream(want)
            actions.append(f"updated stream {want.name}")
        else:
            actions.append(f"stream {want.name} ok")
    for stream, consumer in consumer_configs():
        await js.add_consumer(stream, consumer)
        actions.append(f"consumer {consumer.durable_name} ok")
    try:
        await js.key_value(DELIVERIES_BUCKET)
        actions.append(f"bucket {DELIVERIES_BUCKET} ok")
    except (NotFoundError, Exception) as exc:  # nats-py raises BucketNotFoundError
        if exc.__class__.__name__ not in ("BucketNotFoundError", "NotFoundError"):
            raise
        await js.create_key_value(
            KeyValueConfig(
                bucket=DELIVERIES_BUCKET, history=1, storage=StorageType.FILE, replicas=replicas
            )
        )
        actions.append(f"created bucket {DELIVERIES_BUCKET}")
    return actions
