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
