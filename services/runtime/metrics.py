"""Every Prometheus metric dooralert exports, in one place (deploy/prometheus/rules.yaml and
deploy/grafana/dooralert.json name them; tests/deploy/test_prometheus.py checks they agree).

Labels carry no personal data: never a contact id, name or address, never a school staff
member; a school id, a role, a channel, a kind or a consumer name are fine. Each service serves
these on its own metrics port (healthserver.py), never on intake's published port.
"""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

# Seconds from a report being recorded to the mail server accepting an alert: most should be
# well under a second; the tail shows retries and backoff.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
ACK_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)

# -- intake ---------------------------------------------------------------------------------
REPORTS_ACCEPTED = Counter(
    "dooralert_reports_accepted_total", "Reports recorded in the log", ["via"]
)
REPORTS_REFUSED = Counter(
    "dooralert_reports_refused_total",
    "Report submissions refused (nothing recorded), by reason",
    ["via", "reason"],
)
ACK_DELAY = Histogram(
    "dooralert_acknowledgement_delay_seconds",
    "From the reported encounter to a responder's acknowledgement",
    ["role"],
    buckets=ACK_BUCKETS,
)

# -- the pipeline (intake watches the router's and notifier's consumers) ---------------------
CONSUMER_PENDING = Gauge(
    "dooralert_consumer_pending_messages", "Messages not yet delivered to a consumer", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "dooralert_consumer_ack_pending_messages",
    "Messages delivered to a consumer and not yet acknowledged",
    ["consumer"],
)
CONSUMER_OLDEST_PENDING = Gauge(
    "dooralert_consumer_oldest_pending_seconds",
    "How long the oldest undelivered message has waited (0: none)",
    ["consumer"],
)
CONSUMER_OLDEST_UNACKED = Gauge(
    "dooralert_consumer_oldest_unacked_seconds",
    "How long the oldest unacknowledged message has waited (0: none)",
    ["consumer"],
)
CONSUMER_HEALTHY = Gauge(
    "dooralert_consumer_healthy",
    "1 when the consumer is present, unpaused, pulled from and nothing waits too long",
    ["consumer"],
)
PIPELINE_CHECKED = Gauge(
    "dooralert_pipeline_checked_timestamp_seconds", "When the pipeline was last checked"
)

# -- router ---------------------------------------------------------------------------------
PATTERN_DETECTION_FAILURES = Counter(
    "dooralert_pattern_detection_failures_total",
    "Cross-school pattern detection rounds that failed (retried with backoff)",
)
ESCALATIONS = Counter(
    "dooralert_escalations_raised_total",
    "Escalations raised because acknowledgements were missing at a deadline",
    ["school", "tier"],
)

# -- notifier -------------------------------------------------------------------------------
NOTIFICATIONS_SENT = Counter(
    "dooralert_notifications_sent_total",
    "Notifications accepted by the receiving server",
    ["channel", "kind"],
)
NOTIFICATIONS_FAILED = Counter(
    "dooralert_notifications_failed_total",
    "Failed delivery attempts: outcome=retry (will try again) or gave_up (permanent)",
    ["channel", "kind", "outcome"],
)
DELIVERY_LATENCY = Histogram(
    "dooralert_delivery_latency_seconds",
    "From the report being recorded to the receiving server accepting the notification",
    ["channel", "kind"],
    buckets=LATENCY_BUCKETS,
)
SMTP_UP = Gauge(
    "dooralert_smtp_up", "1 when the last check of the SMTP server (or last send) succeeded"
)

# -- audit ledger ---------------------------------------------------------------------------
LEDGER_TREE_SIZE = Gauge("dooralert_ledger_tree_size", "Events in the ledger's Merkle tree")
LEDGER_CHECKPOINT_SIZE = Gauge(
    "dooralert_ledger_checkpoint_size", "Tree size of the last signed checkpoint"
)
LEDGER_LOG_SIZE = Gauge(
    "dooralert_ledger_log_last_seq", "The event log's last sequence, as the ledger last saw it"
)
LEDGER_LAST_CHECKPOINT = Gauge(
    "dooralert_ledger_last_checkpoint_timestamp_seconds",
    "When the ledger last signed a checkpoint (or started)",
)
LEDGER_SINCE_CHECKPOINT = Gauge(
    "dooralert_ledger_seconds_since_checkpoint",
    "Seconds since the ledger last signed a checkpoint (or started)",
)

# -- every service --------------------------------------------------------------------------
READY = Gauge("dooralert_ready", "1 when the service is ready (as its /readyz says)", ["service"])
NATS_CONNECTED = Gauge("dooralert_nats_connected", "1 while connected to NATS", ["service"])


def seconds_between(start: datetime, end: datetime) -> float:
    """Non-negative seconds from `start` to `end` (clocks of two machines may disagree)."""
    return max(0.0, (end - start).total_seconds())


def checkpoint_signed(size: int, *, at: float | None = None) -> None:
    """Record a signed checkpoint of `size` events (at wall-clock `at`, default now)."""
    when = time.time() if at is None else at
    LEDGER_CHECKPOINT_SIZE.set(size)
    LEDGER_LAST_CHECKPOINT.set(when)
    LEDGER_SINCE_CHECKPOINT.set_function(lambda: max(0.0, time.time() - when))
