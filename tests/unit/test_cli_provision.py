"""`dooralert provision` when NATS is there but slow: a clear reason and exit 2, no traceback."""

from __future__ import annotations

from typing import Any

import nats.errors
import pytest
from typer.testing import CliRunner

from services.cli import services
from services.cli.main import app

runner = CliRunner()


def test_a_request_timeout_says_to_run_it_again_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: dict[str, Any] = {}

    def slow(settings: Any, **kwargs: Any) -> list[str]:
        asked.update(kwargs)
        raise nats.errors.TimeoutError

    monkeypatch.setattr(services, "on_jetstream", slow)
    monkeypatch.setenv("DOORALERT_NATS_URL", "nats://provision:pw-secret@127.0.0.1:4222")
    result = runner.invoke(app, ["provision", "--replicas", "3"])
    assert result.exit_code == 2, result.output
    assert "did not answer a request within 30 s" in result.output
    assert "run it again" in result.output
    assert "cannot reach" not in result.output  # it was reached
    assert "pw-secret" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # Each request may take 30 s: a replicated stream on a forming cluster is slow to place.
    assert asked["api_timeout"] == services.PROVISION_API_TIMEOUT == 30.0


def test_a_refused_connection_still_says_it_cannot_reach_nats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(settings: Any, **kwargs: Any) -> list[str]:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(services, "on_jetstream", refused)
    monkeypatch.setenv("DOORALERT_NATS_URL", "nats://127.0.0.1:4222")
    result = runner.invoke(app, ["provision"])
    assert result.exit_code == 2, result.output
    assert "cannot reach NATS at" in result.output
