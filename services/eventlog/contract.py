"""The stream contract (DESIGN §3): the streams, subjects and durable consumers dooralert
relies on, and the rule that provisioning never weakens a stream someone made stronger.

Pure data and checks: `provision.py` applies them to a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
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
# Signed-out staff sessions (intake): key = session id, kept as long as a session can live.
SESSIONS_BUCKET = "DOORALERT_SESSIONS"
# Incidents' notes keys (crypto-shredding): key = incident id; max age = the notes' retention.
NOTE_KEYS_BUCKET = "DOORALERT_NOTE_KEYS"
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
            # Single look-ups (an incident's report, a pattern event) by direct get; a "not
            # found" is asked again of the leader (direct.py), so a lagging replica never
            # makes a stored event look absent.
            allow_direct=True,
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


def bucket_allows_direct(bucket: str, replicas: int) -> bool:
    """Whether the KV `bucket` with `replicas` copies answers direct gets (nats-py's KeyValue
    then reads by direct get by itself). Any current replica answers a direct get, so with
    more than one a follower that lags can answer with an old value or none; with one, the
    replica that answers is the stream leader, and a direct get reads what the JSON API reads.

    - DELIVERIES: with one replica only. Its records are the notifier's duplicate check after
      a crash: a stale "not sent" would send an email twice, so with more replicas reads go
      to the leader (nats-py's KeyValue has no fallback; the records bind through
      `direct.consistent_key_value`).
    - SESSIONS: never (not on the alert path). A signed-out session that a lagging replica
      does not know yet would be let in again.
    - NOTE_KEYS: with one replica; with more only once every reader binds through
      `direct.leader_checked_key_value`, which asks the leader again before believing a key
      is absent (notekeys.py does not: its `open` binds through `direct.consistent_key_value`,
      which with more than one replica reads from the leader, never by direct get).

    A bucket whose replicas an operator raises must be provisioned again (direct gets off).
    The services need no restart: the delivery records and the notes keys bind through
    `direct.consistent_key_value`, which turns to the stream leader once a direct get finds
    no responder (nats-py's own KeyValue bound while the bucket allowed direct gets would keep
    asking for them).
    """
    if bucket == DELIVERIES_BUCKET:
        return replicas <= 1
    if bucket == NOTE_KEYS_BUCKET:
        return replicas <= 1 or NOTE_KEYS_READERS_LEADER_CHECKED
    return False


# Set True when notekeys.py binds with direct.leader_checked_key_value (see above).
NOTE_KEYS_READERS_LEADER_CHECKED = False


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
                f"{SUBJECT_PREFIX}.*.*.incident.reopened",
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


_FLAGS = frozenset(
    {"deny_delete", "deny_purge", "allow_rollup_hdrs", "allow_msg_schedules", "allow_direct"}
)


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
        "allow_direct",
    )
    return any(
        bool(getattr(have, k)) != bool(getattr(want, k))
        if k in _FLAGS
        else getattr(have, k) != getattr(want, k)
        for k in keys
    )


# A consumer `dooralert provision` recreated carries this metadata key (the time it did), and
# may start from a time instead of the beginning (see provision.restored_config).
RESTORED_KEY = "dooralert.restored_at"
# How far back a recreated consumer redelivers: inside the stream's duplicate window, with a
# margin, a redelivered message's derived events are dropped by the server as duplicates (and
# the notifier's delivery records stop a second email), so redelivery is harmless there.
REDELIVER_SECONDS = DUPLICATE_WINDOW_S - 600.0


@dataclass(frozen=True)
class ConsumerCheck:
    """How a durable consumer on the server compares with the contract (see `check_consumer`)."""

    name: str
    stream: str
    missing: bool = False
    paused_until: str | None = None
    drift: tuple[str, ...] = ()
    # The drift moved or could have moved the consumer's position (filter, ack or deliver
    # policy): only deleting and recreating it restores the contract.
    recreate: bool = False

    @property
    def problems(self) -> list[str]:
        """What is wrong, one sentence each; empty when the consumer keeps the contract."""
        out = []
        if self.missing:
            out.append(f"consumer {self.name} on {self.stream} does not exist")
        if self.paused_until:
            out.append(f"consumer {self.name} is paused until {self.paused_until}")
        if self.drift:
            out.append(f"consumer {self.name} was redefined: " + "; ".join(self.drift))
        return out


def filters(config: ConsumerConfig) -> list[str]:
    """A consumer's filter subjects, however they were given."""
    if config.filter_subjects:
        return sorted(config.filter_subjects)
    return [config.filter_subject] if config.filter_subject else []


def _enum(value: object) -> str:
    return str(getattr(value, "value", value))


def consumer_drift(have: ConsumerConfig, want: ConsumerConfig) -> tuple[list[str], bool]:
    """The contract settings `have` differs on, and whether fixing them needs a recreation."""
    out: list[str] = []
    recreate = False
    if filters(have) != filters(want):
        out.append(f"filter subjects are {filters(have)} (contract: {filters(want)})")
        recreate = True
    if _enum(have.ack_policy) != _enum(want.ack_policy):
        out.append(f"ack policy is {_enum(have.ack_policy)} (contract: {_enum(want.ack_policy)})")
        recreate = True
    restored = _enum(have.deliver_policy) == "by_start_time" and RESTORED_KEY in (
        have.metadata or {}
    )
    if _enum(have.deliver_policy) != _enum(want.deliver_policy) and not restored:
        out.append(
            f"deliver policy is {_enum(have.deliver_policy)} "
            f"(contract: {_enum(want.deliver_policy)})"
        )
        recreate = True
    for key, unit in (("ack_wait", " s"), ("max_deliver", ""), ("max_ack_pending", "")):
        h, w = getattr(have, key), getattr(want, key)
        if w is not None and h != w:
            out.append(f"{key} is {h}{unit} (contract: {w}{unit})")
    return out, recreate


def check_consumer(info: ConsumerInfo | None, stream: str, want: ConsumerConfig) -> ConsumerCheck:
    """Compare a consumer's info (None: it does not exist) with the contract (pure)."""
    name = want.durable_name or ""
    if info is None:
        return ConsumerCheck(name=name, stream=stream, missing=True)
    drift, recreate = consumer_drift(info.config, want)
    paused = (info.config.pause_until or "paused") if info.paused else None
    return ConsumerCheck(
        name=name, stream=stream, paused_until=paused, drift=tuple(drift), recreate=recreate
    )


def contract_consumer(name: str) -> tuple[str, ConsumerConfig]:
    """The stream and contract config of the durable consumer `name`."""
    for stream, config in consumer_configs():
        if config.durable_name == name:
            return stream, config
    raise KeyError(f"no durable consumer {name!r} in the contract")


def weakened(have: StreamConfig, want: StreamConfig) -> list[str]:
    """How an existing stream is weaker than the contract (what provisioning restores)."""
    out = []
    for flag in ("deny_delete", "deny_purge", "allow_msg_schedules"):
        if getattr(want, flag) and not getattr(have, flag):
            out.append(f"{flag} is off")
    if want.allow_rollup_hdrs is False and have.allow_rollup_hdrs:
        out.append("allow_rollup_hdrs is on")
    if (have.duplicate_window or 0) < (want.duplicate_window or 0):
        out.append(
            f"duplicate_window is {have.duplicate_window}s (contract: {want.duplicate_window}s)"
        )
    if set(want.subjects or []) - set(have.subjects or []):
        out.append(f"subjects lack {sorted(set(want.subjects or []) - set(have.subjects or []))}")
    return out
