"""structlog setup: JSON lines outside a terminal, readable output in one; secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values never reach a log line: secrets, and report free text that may hold
# personal data despite the form's warning.
_REDACTED_KEYS = frozenset(
    {
        "password",
        "secret",
        "secret_key",
        "secret_keys",
        "token",
        "key",
        "intake_key",
        "authorization",
        "notes",
        "address",
        "email",
        "to",
    }
)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _REDACTED_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(*, level: str = "info", fmt: str = "auto") -> None:
    """structlog key-value logs: JSON outside a terminal, readable in one."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        # Plain tracebacks: the default formatter prints every frame's local variables, which
        # would put keys, secrets and addresses into the log.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info if use_json else lambda _, __, ed: ed,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Whatever sys.stderr is when a line is written (not when logging was configured):
        # a replaced stream (tests' capture, a daemon's redirect) never gets stale writes.
        # WriteLogger writes line and newline in one write() (PrintLogger's print() made two
        # syscalls per line on the unbuffered stderr).
        logger_factory=lambda *_: structlog.WriteLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library loggers (uvicorn, faststream, nats) go to stderr at warning and above.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    # Apprise logs its targets (phone numbers, chat ids) in its own warnings: keep them out.
    logging.getLogger("apprise").setLevel(logging.CRITICAL)


def get_logger(name: str) -> Any:
    """A structlog logger named `name`."""
    return structlog.get_logger(name)
