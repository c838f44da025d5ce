"""The event log: the `EventLog` interface (interface.py) over NATS JetStream (appending in
jetstream.py, reading in reading.py), one retry policy (retry.py), the stream contract
(contract.py) and provisioning (provision.py). Services import from here."""

from services.eventlog.contract import (
    CHECKPOINTS_STREAM,
    DELIVERIES_BUCKET,
    DUPLICATE_WINDOW_S,
    SESSIONS_BUCKET,
    STREAM,
    SUBJECT_PREFIX,
    TIMER_FIRED_PREFIX,
    TIMER_SCHEDULE_PREFIX,
    TIMERS_STREAM,
    consumer_configs,
    stream_configs,
)
from services.eventlog.interface import (
    Appended,
    EventLog,
    IncompleteRead,
    StoredMessage,
    Tail,
    TailReset,
)
from services.eventlog.jetstream import (
    JetStreamEventLog,
    connect,
    publish_event,
    publish_events,
    server_urls,
)
from services.eventlog.provision import ProvisionError, provision
from services.eventlog.reading import (
    StreamTail,
    consume_batches,
    get_last,
    read_from,
    read_incident,
    read_messages,
    readable_events,
    stored,
    subscribe_from,
)
from services.eventlog.retry import READ_INTERRUPTED_ERRORS, TRANSIENT_NATS_ERRORS, retrying

__all__ = [
    "CHECKPOINTS_STREAM",
    "DELIVERIES_BUCKET",
    "DUPLICATE_WINDOW_S",
    "READ_INTERRUPTED_ERRORS",
    "SESSIONS_BUCKET",
    "STREAM",
    "SUBJECT_PREFIX",
    "TIMERS_STREAM",
    "TIMER_FIRED_PREFIX",
    "TIMER_SCHEDULE_PREFIX",
    "TRANSIENT_NATS_ERRORS",
    "Appended",
    "EventLog",
    "IncompleteRead",
    "JetStreamEventLog",
    "ProvisionError",
    "StoredMessage",
    "StreamTail",
    "Tail",
    "TailReset",
    "connect",
    "consume_batches",
    "consumer_configs",
    "get_last",
    "provision",
    "publish_event",
    "publish_events",
    "read_from",
    "read_incident",
    "read_messages",
    "readable_events",
    "retrying",
    "server_urls",
    "stored",
    "stream_configs",
    "subscribe_from",
]
