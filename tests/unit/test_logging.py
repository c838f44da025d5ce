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
