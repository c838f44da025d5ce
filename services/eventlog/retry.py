"""The one list of transient NATS errors and the one retry policy for JetStream requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from services.runtime.logging import get_logger

log = get_logger("dooralert.eventlog")
T = TypeVar("T")

# What a JetStream request raises while a cluster elects a leader or a connection is being
# re-established: no stream leader answers (503 no responders), JetStream answers 503
# unavailable, or nothing answers before the timeout.
TRANSIENT_NATS_ERRORS = (
    NatsTimeoutError,
    NoRespondersError,
    ConnectionClosedError,
    asyncio.TimeoutError,
    NoStreamResponseError,
    ServiceUnavailableError,
)

# What a long-lived reader (the audit ledger) takes as "read again from where I stand" rather
# than "give up": the transient errors, plus any status a fetch or probe is answered with
# (409 consumer deleted or leadership changed, 500 while a stream recovers). Not for
# requests: retrying a 400 or 404 request would only repeat the same answer.
READ_INTERRUPTED_ERRORS = (*TRANSIENT_NATS_ERRORS, APIError)


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    retry_for: float,
    what: str,
    stop: asyncio.Event | None = None,
    errors: tuple[type[BaseException], ...] = TRANSIENT_NATS_ERRORS,
    max_delay: float = 0.5,
    **context: object,
) -> T:
    """Run a JetStream request, retrying `errors` (backoff 0.1 s doubling to `max_delay`)
    until `retry_for` seconds have passed (`math.inf`: for ever) or `stop` is set; then the
    last error is raised."""
    deadline = time.monotonic() + retry_for
    delay = 0.1
    while True:
        try:
            return await op()
        except errors as exc:
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise
            log.warning(f"{what}.retry", delay=delay, error=type(exc).__name__, **context)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
