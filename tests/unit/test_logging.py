"""Logs never carry secrets: redacted keys, and tracebacks without local variables."""

from __future__ import annotations

import pytest

from services.runtime.logging import configure_logging, get_logger


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_exception_does_not_print_local_variables(fmt: str, capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging(fmt=fmt)
    log = get_logger("test")

    def fails() -> None:
        secret = "SUPERSECRET-KEY"  # noqa: F841 - a local a formatter might print
        raise RuntimeError("boom")

    try:
        fails()
    except RuntimeError:
        log.exception("something.failed", secret_key="also-secret", incident="i-1")
    err = capsys.readouterr().err
    assert "boom" in err and "i-1" in err
    assert "SUPERSECRET-KEY" not in err and "also-secret" not in err


class _CountingStream:
    """A text stream that records each write() (each is one syscall on the real stderr)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_each_log_line_is_one_write_to_the_stderr_of_the_moment(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_logging(fmt=fmt)
    log = get_logger("test")
    stream = _CountingStream()
    # Replaced after logging was configured: lines go to the stream of the moment.
    monkeypatch.setattr("sys.stderr", stream)
    log.info("first.line", incident="i-1")
    log.warning("second.line", n=2)
    assert len(stream.writes) == 2
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)
    assert "first.line" in stream.writes[0] and "i-1" in stream.writes[0]
    if fmt == "json":
        import json

        line = json.loads(stream.writes[1])
        assert line["event"] == "second.line" and line["n"] == 2 and line["level"] == "warning"


def test_a_logger_follows_each_configure_logging_even_one_used_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Loggers are assembled once per configuration (not per call), yet a module's logger used
    # before logging was configured is not left on structlog's defaults (unredacted, stdout).
    log = get_logger("early")
    stream = _CountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="warning", fmt="json")
    log.info("dropped.line")
    log.warning("kept.line", secret_key="also-secret")
    configure_logging(level="debug", fmt="console")
    log.debug("console.line", n=3)
    later = get_logger("later")
    later.info("later.line", token="also-secret")
    assert len(stream.writes) == 3
    import json

    kept = json.loads(stream.writes[0])
    assert kept["event"] == "kept.line" and kept["secret_key"] == "[redacted]"
    assert "console.line" in stream.writes[1] and not stream.writes[1].startswith("{")
    assert "later.line" in stream.writes[2] and "also-secret" not in "".join(stream.writes)
    configure_logging()


def test_capture_logs_sees_a_logger_already_used() -> None:
    from structlog.testing import capture_logs

    configure_logging(fmt="json")
    log = get_logger("used")
    log.bind(x=1).info("before.capture")
    with capture_logs() as logs:
        log.info("captured.line", incident="i-1")
        log.bind(seq=2).warning("bound.line")
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("captured.line", "info"),
        ("bound.line", "warning"),
    ]
    assert logs[1]["seq"] == 2
