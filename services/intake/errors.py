"""The intake's errors, and which failures mean "the event log is unreachable".

    IntakeError
    ├── ApiError      a request refused (4xx): answered as {"error": message, **extra}
    ├── ReportInvalid the data fails validation: 422 naming each field
    ├── ReportLimited the school's report limit is reached: 429, and whom to call meanwhile
    └── Unavailable   the event log did not answer; nothing was recorded: 503, call the district

Anything else raised while handling a request is a bug: a logged 500 (app.py).
"""

from __future__ import annotations

from typing import Any, NoReturn

from nats.errors import (
    ConnectionDrainingError,
    ConnectionReconnectingError,
    NoServersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.js.errors import APIError

from services.eventlog.interface import IncompleteRead, TailReset
from services.eventlog.retry import TRANSIENT_NATS_ERRORS
from services.intake.domain.refusals import Refused

# What the event log raises when it cannot be reached or cannot serve the request: the
# transient errors it already retried (until publish_retry_seconds ran out), a read cut short,
# a connection that is closed, draining or reconnecting, or a JetStream API error answer
# (e.g. a throwaway read consumer lost to a leader change).
LOG_FAILURES: tuple[type[BaseException], ...] = (
    *TRANSIENT_NATS_ERRORS,
    IncompleteRead,
    TailReset,
    APIError,
    ConnectionDrainingError,
    ConnectionReconnectingError,
    NoServersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)


class IntakeError(Exception):
    """Base of the errors the intake answers on purpose (never a bug)."""


class ApiError(IntakeError):
    """A refused request: its HTTP status, the message (the API's English), extra JSON
    fields, and the catalogue key a page shows instead of the message (if there is one)."""

    def __init__(self, status: int, message: str, *, key: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.key, self.extra = status, message, key, extra


class ReportInvalid(IntakeError):
    """The report failed validation; `fields` lists each bad field and why."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{f['field']}: {f['reason']}" for f in fields))
        self.fields = fields


class Unavailable(IntakeError):
    """The event log could not be reached; nothing was recorded."""


class ReportLimited(IntakeError):
    """The school reached its report limit; nothing was recorded. Retry after `wait` s."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"report limit reached; retry in {wait:.0f} s")
        self.wait = wait

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait (at least 1), for Retry-After."""
        return int(self.wait) + 1


def refuse(refused: Refused) -> NoReturn:
    """Raise a decision's refusal as the error the HTTP layer answers."""
    if refused.kind == "invalid":
        raise ReportInvalid(list(refused.fields))
    raise ApiError(refused.status, refused.message, key=refused.key)
