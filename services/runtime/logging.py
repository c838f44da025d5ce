"""structlog setup: JSON lines outside a terminal, readable output in one; secrets redacted."""

from __future__ import annotations

import logging
import sys
import threading
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


class _StderrLogger:
    """Writes each line, newline included, in one write() to whatever sys.stderr is when the
    line is written (not when logging was configured or the logger assembled): a replaced
    stream (tests' capture, a daemon's redirect) never gets stale writes. One write per line
    (PrintLogger's print() made two syscalls per line on the unbuffered stderr)."""

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        stream = sys.stderr
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


_STDERR = _StderrLogger()
# Bumped by each configure_logging: every `_Logger` assembles its bound logger again.
_generation = 0


class _Logger:
    """A named logger that assembles its structlog bound logger once per `configure_logging`.

    structlog's own lazy proxy either assembles one on every call (wrapper class, context,
    logger: ~1 % of each service's CPU) or, with cache_logger_on_first_use, keeps the
    configuration of its first use for good: a module's logger used before configure_logging
    would stay unredacted, and a test's reconfiguration would not reach it. This one follows
    configure_logging. structlog.testing.capture_logs still works: it edits the processor list
    the bound loggers share, in place. (A direct structlog.configure is not followed.)"""

    __slots__ = ("_bound", "_generation", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._generation = -1

    def __getattr__(self, attr: str) -> Any:
        if self._generation != _generation:
            self._bound = structlog.get_logger(self._name).bind()
            self._generation = _generation
        return getattr(self._bound, attr)


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
        logger_factory=lambda *_: _STDERR,
        # `_Logger` caches per configuration instead.
        cache_logger_on_first_use=False,
    )
    global _generation
    _generation += 1
    # Library loggers (uvicorn, faststream, nats) go to stderr at warning and above.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    # Apprise logs its targets (phone numbers, chat ids) in its own warnings: keep them out.
    logging.getLogger("apprise").setLevel(logging.CRITICAL)


def get_logger(name: str) -> Any:
    """A structlog logger named `name`, configured by the latest `configure_logging`."""
    return _Logger(name)
