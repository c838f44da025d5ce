"""Process settings, read from `DOORALERT_*` environment variables (documented in README)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG_DIR = REPO_ROOT / "deploy" / "examples"


MIN_SECRET_BYTES = 32
# Values that were ever a default or an example: whoever read the README could forge with them.
PUBLISHED_KEYS = frozenset(
    {
        "dev-only-insecure-secret-change-me",
        "change-me",
        "changeme",
        "secret",
        "test-secret",
    }
)
MAKE_A_KEY = (
    'Make one with `dooralert keys secret` (or: python -c "import secrets; '
    'print(secrets.token_urlsafe(48))") and set DOORALERT_SECRET_KEYS=<key>.'
)


class InsecureSecretKey(ValueError):
    """The secret key is missing, a published example, or too short to resist guessing."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOORALERT_", extra="ignore")

    # One server, or a cluster's nodes separated by commas: "nats://a:4222,nats://b:4222".
    # A comma-separated value becomes a list (what NatsBroker and nats.connect take for
    # several servers); a single URL stays the string it was.
    nats_url: Annotated[str | list[str], NoDecode] = "nats://127.0.0.1:4222"
    # How many times a service tries each server again after losing its connection before it
    # exits (code 4) for its supervisor to restart it; -1: for ever.
    nats_reconnect_attempts: int = -1
    config_dir: Path = EXAMPLE_CONFIG_DIR

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "dooralert <alerts@dooralert.invalid>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout: float = 10.0

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # The address responders' links point at; defaults to http://<http_host>:<http_port>.
    public_url: str | None = None
    # The keys that sign links, acknowledgements and sessions: DOORALERT_SECRET_KEYS, comma-
    # separated, the first signs and every one verifies (rotation). DOORALERT_SECRET_KEY (one
    # key) still works when DOORALERT_SECRET_KEYS is unset. No default: see `signing_keys`.
    secret_keys: Annotated[list[SecretStr], NoDecode] = []
    secret_key: SecretStr | None = None
    # Status links in alerts stay valid this long (each recipient gets their own).
    view_link_days: float = 7.0
    # Staff notes stay readable this long: then their incident's key expires and they are gone.
    notes_retention_days: Annotated[float, Field(gt=0)] = 90.0
    max_report_bytes: int = 16 * 1024

    # Notifier retries: attempt n waits retry_base_seconds * 2**(n-1), capped, with jitter.
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    max_attempts: int = 8
    publish_timeout_seconds: float = 2.0
    # Covers a cluster's stream-leader failover (measured 5-8 s; see streams.publish_event).
    publish_retry_seconds: float = 20.0

    log_level: str = "info"
    log_format: str = "auto"  # auto | json | console
    # uvloop when installed (auto), or asyncio's own loop (services/runtime/eventloop.py).
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_secret_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    def webhook_signing_secret(self) -> str:
        """The key webhook bodies are signed with: DOORALERT_WEBHOOK_SECRET, else one derived
        from the first secret key. Never a secret key itself: every webhook receiver holds this
        value, and with a signing key it could forge acknowledgements."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        first = self.signing_keys()[0].encode()
        return hmac.new(first, b"dooralert webhook signatures v1", hashlib.sha256).hexdigest()

    def signing_keys(self) -> tuple[str, ...]:
        """The secret keys, the signing one first; `InsecureSecretKey` when there is none, or
        one is a published example or shorter than 32 bytes (services refuse to start)."""
        given = self.secret_keys or ([self.secret_key] if self.secret_key else [])
        keys = tuple(k.get_secret_value() for k in given)
        if not keys:
            raise InsecureSecretKey(
                "no secret key: set DOORALERT_SECRET_KEYS (links, acknowledgements and "
                f"sessions are signed with it). {MAKE_A_KEY}"
            )
        for n, key in enumerate(keys, start=1):
            which = f"key {n} of DOORALERT_SECRET_KEYS" if len(keys) > 1 else "the secret key"
            if key in PUBLISHED_KEYS:
                raise InsecureSecretKey(
                    f"{which} is a published example value: anyone could forge links and "
                    f"sessions with it. {MAKE_A_KEY}"
                )
            if len(key.encode()) < MIN_SECRET_BYTES:
                raise InsecureSecretKey(
                    f"{which} is {len(key.encode())} bytes; at least {MIN_SECRET_BYTES} are "
                    f"needed. {MAKE_A_KEY}"
                )
        return keys

    @field_validator("nats_url", mode="before")
    @classmethod
    def _split_nats_url(cls, value: object) -> object:
        if isinstance(value, str) and "," in value:
            return [u.strip() for u in value.split(",") if u.strip()]
        return value

    @property
    def base_url(self) -> str:
        """Where links in alerts point: the public URL, else the local listener."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.http_host}:{self.http_port}"

    # Audit ledger (DESIGN §6; `dooralert audit serve`). A checkpoint is signed at least every
    # `checkpoint_every` events and every `checkpoint_seconds` seconds while the log grows.
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 10.0
    # The ledger's signing key (`dooralert keys generate`), mode 0600. Required by `audit serve`.
    log_key_file: Path | None = None
    # The checkpoint origin; default `dooralert.example/<district id from district.yaml>`.
    log_origin: str | None = None
    # Also write each checkpoint note into this directory (outside NATS), if set.
    checkpoint_dir: Path | None = None
    # Send the latest checkpoint to the district's witnesses (district.yaml `audit.witnesses`)
    # this often, and at once when an incident is resolved.
    witness_seconds: float = 3600.0

    # Notifier channels (issue: fallback, webhook, SMTP reuse, concurrency).
    # Webhook bodies are signed with this key (HMAC-SHA256); default: secret_key.
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = 5.0
    # Pooled SMTP sessions per server; one hanging recipient holds only one of them. 16, as
    # notifier_workers: each request handled at once can have its session (with 4, a burst
    # through a relay 20 ms away waited on the sessions: 2,400 emails in 27 s instead of about
    # 10). A server that takes fewer connections from one client (Postfix's
    # smtpd_client_connection_count_limit, 50 by default; some relays far fewer) is no
    # failure: the pool stops at the sessions the server accepted and sends wait for one of
    # them, trying one more after a quiet minute (smtp.SmtpPool).
    smtp_pool_size: int = 16
    # A pooled session idle longer than this is closed and reopened (servers drop idle ones).
    smtp_idle_seconds: float = 30.0
    # Notification requests processed at once; a slow target holds only one of them.
    notifier_workers: int = 16
    # Acknowledgement links in alerts stay valid this long.
    ack_link_days: int = 7

    # Intake staff pages (issue: staff intake experience, access control).
    # Staff sign in once per device; the signed session cookie lasts this long.
    session_lifetime_seconds: float = 30 * 24 * 3600.0
    # Mark session cookies Secure; default: when public_url is https.
    cookie_secure: bool | None = None
    # Write requests (reports, follow-ups, acks) allowed per minute, in bursts of the same size;
    # 0 turns a limit off. Per school (API key or session) and per client address.
    rate_limit_school_per_minute: float = 600.0
    rate_limit_client_per_minute: float = 1200.0
    # Failed sign-ins per (client address, school) per minute. Only failures count: a correct
    # key always signs in, however many others behind the same address got it wrong.
    rate_limit_signin_per_minute: float = 10.0
    # Wrong or missing API keys (Bearer) per client address per minute; a correct key still works.
    rate_limit_auth_failures_per_minute: float = 20.0
    # New reports per school per minute (bursts of the same size). A retry of a report already
    # recorded (same Idempotency-Key or form submission) does not count.
    rate_limit_reports_per_minute: float = 10.0
    # The incident page's live stream: how often it re-reads the log (one shared reader per
    # incident, however many viewers), and how long one stream stays open before the browser
    # reconnects.
    live_poll_seconds: float = 1.0
    live_max_seconds: float = 600.0
    # The incident page warns "sending is delayed" (with whom to call) once a notification
    # has waited this long to be sent, or a report this long for its first; a healthy
    # notifier sends within a second or two.
    late_after_seconds: float = Field(default=30.0, gt=0)
    # Open live streams allowed per link token (or staff session) and per client address; 0: no cap.
    live_streams_per_token: int = 3
    live_streams_per_client: int = 10
    # Addresses of the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are
    # believed (comma-separated IPs or CIDR networks, "*" for any). Empty: none; the client
    # address is the TCP peer, and forwarded headers are ignored.
    trusted_proxies: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        for item in (v.strip() for v in value.split(",")):
            if item and item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item!r} is not an IP address or CIDR network "
                        "(e.g. DOORALERT_TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16)"
                    ) from None
        return value.strip()

    # Drift and stalls (issue 10). Router and notifier check their own durable consumers this
    # often and exit when one is paused, deleted or redefined. 0 turns the watch off (only for
    # a test that redefines a consumer on purpose; /healthz still reports the drift).
    consumer_check_seconds: float = 5.0
    # Intake's /healthz and `dooralert status`: a message waiting undelivered on the router's
    # or notifier's consumer longer than this, or a consumer nobody has pulled from for this
    # long, makes the pipeline "stalled" (503, and reports accepted then carry the advice).
    pipeline_stall_seconds: float = 10.0
    # A delivered message still unacknowledged after this long (a stuck handler). Unset: the
    # notifier's whole retry schedule plus 2 minutes, so one contact's mail server being down
    # (a request waiting in backoff, unacknowledged) is not a stalled pipeline.
    pipeline_unacked_seconds: float | None = None

    def unacked_limit(self) -> float:
        """How long a delivered message may stay unacknowledged before the pipeline is stalled."""
        if self.pipeline_unacked_seconds is not None:
            return self.pipeline_unacked_seconds
        waits = [
            min(self.retry_base_seconds * 2.0 ** (n - 1), self.retry_max_seconds)
            for n in range(1, max(1, self.max_attempts))
        ]
        return float(sum(waits)) + 120.0

    # How often intake refreshes the pipeline report it answers from (never per request).
    pipeline_check_seconds: float = 2.0

    # Health and metrics (issue 14): each service serves /livez, /readyz and /metrics here, a
    # port apart from intake's published one. 0 turns it off. Containers set the host 0.0.0.0
    # so the kubelet and Prometheus reach it; never publish it (it says when reports come in).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # On SIGTERM the router and notifier stop taking messages and let the ones in hand finish
    # (an alert being sent is sent and recorded) for up to this long; keep it under the
    # orchestrator's grace period (compose stop_grace_period, Kubernetes 30 s).
    shutdown_grace_seconds: float = 20.0
