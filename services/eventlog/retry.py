"""The one list of transient NATS errors and the one retry policy for JetStream requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

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


async def retrying(
    op: Callable[[], Awaitable[T]], *, retry_for: float, what: str, **context: object
) -> T:
    """Run a JetStream request, retrying transient failures (backoff 0.1 s doubling to 0.5 s)
    until `retry_for` seconds have passed; then the last error is raised."""
    deadline = time.monotonic() + retry_for
    delay = 0.1
    while True:
        try:
            return await op()
        except TRANSIENT_NATS_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(f"{what}.retry", delay=delay, error=type(exc).__name__, **context)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
