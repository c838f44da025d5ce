"""The stream contract (DESIGN §3): the streams, subjects and durable consumers dooralert
relies on, and the rule that provisioning never weakens a stream someone made stronger.

Pure data and checks: `provision.py` applies them to a server.
"""

from __future__ import annotations

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

STREAM = "DOORALERT"
TIMERS_STREAM = "DOORALERT_TIMERS"
CHECKPOINTS_STREAM = "DOORALERT_CHECKPOINTS"
DELIVERIES_BUCKET = "DOORALERT_DELIVERIES"
SUBJECT_PREFIX = "dooralert"
DUPLICATE_WINDOW_S = 60 * 60.0  # one hour: covers any redelivery and a cluster failover


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The streams the contract requires, with `replicas` copies each."""
    return [
        StreamConfig(
            name=STREAM,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            deny_delete=True,
            deny_purge=True,
            allow_rollup_hdrs=False,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=0,
        ),
        StreamConfig(
            name=TIMERS_STREAM,
            subjects=["dooralert_timers.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_msg_schedules=True,
            allow_rollup_hdrs=True,  # the server turns this on for message schedules
        ),
        StreamConfig(
            name=CHECKPOINTS_STREAM,
            subjects=["dooralert_checkpoints.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            deny_delete=True,
            deny_purge=True,
            allow_rollup_hdrs=False,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


TIMER_FIRED_PREFIX = "dooralert_timers.fired"
TIMER_SCHEDULE_PREFIX = "dooralert_timers.schedule"


def consumer_configs() -> list[tuple[str, ConsumerConfig]]:
    """The services' durable consumers, by stream."""
    return [(STREAM, c) for c in _event_consumers()] + [
        (
            TIMERS_STREAM,
            ConsumerConfig(
                durable_name="router-timers",
                filter_subject=f"{TIMER_FIRED_PREFIX}.>",
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30.0,
                max_deliver=50,
            ),
        )
    ]


def _event_consumers() -> list[ConsumerConfig]:
    return [
        ConsumerConfig(
            durable_name="router",
            filter_subject=f"{SUBJECT_PREFIX}.*.*.encounter.reported",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=20,
            max_ack_pending=1000,
        ),
        ConsumerConfig(
            durable_name="notifier",
            filter_subject=f"{SUBJECT_PREFIX}.*.*.notification.requested",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=60.0,
            # The notifier stops retrying at DOORALERT_MAX_ATTEMPTS and records a permanent
            # failure itself; this is only the server's backstop.
            max_deliver=100,
            max_ack_pending=1000,
        ),
        ConsumerConfig(
            durable_name="router-followups",
            filter_subjects=[
                f"{SUBJECT_PREFIX}.*.*.encounter.updated",
                f"{SUBJECT_PREFIX}.*.*.incident.resolved",
                f"{SUBJECT_PREFIX}.*.*.notification.failed",
            ],
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=20,
            max_ack_pending=1000,
        ),
    ]


def weakenings(have: StreamConfig, want: StreamConfig) -> list[str]:
    """What applying `want` over `have` would weaken; provisioning refuses any of these."""
    out = []
    for flag in ("deny_delete", "deny_purge", "allow_msg_schedules"):
        if getattr(have, flag) and not getattr(want, flag):
            out.append(f"{flag} would be turned off")
    if have.allow_rollup_hdrs is False and want.allow_rollup_hdrs:
        out.append("allow_rollup_hdrs would be turned on")
    if (have.duplicate_window or 0) > (want.duplicate_window or 0):
        out.append(
            f"duplicate_window would shrink from {have.duplicate_window}s to "
            f"{want.duplicate_window}s"
        )
    if have.storage != want.storage:
        out.append(f"storage would change from {have.storage} to {want.storage}")
    if set(have.subjects or []) - set(want.subjects or []):
        out.append(
            f"subjects would lose {sorted(set(have.subjects or []) - set(want.subjects or []))}"
        )
    return out


_FLAGS = frozenset({"deny_delete", "deny_purge", "allow_rollup_hdrs", "allow_msg_schedules"})


def differs(have: StreamConfig, want: StreamConfig) -> bool:
    """Whether `have` needs updating to `want` on the settings the contract fixes."""
    keys = (
        "subjects",
        "deny_delete",
        "deny_purge",
        "allow_rollup_hdrs",
        "duplicate_window",
        "allow_msg_schedules",
        "storage",
        "num_replicas",
    )
    return any(
        bool(getattr(have, k)) != bool(getattr(want, k))
        if k in _FLAGS
        else getattr(have, k) != getattr(want, k)
        for k in keys
    )
