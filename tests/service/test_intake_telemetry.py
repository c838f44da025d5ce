"""Intake never hands requests to OpenTelemetry: FastAPI's own telemetry (0.165+) would put
each request's URL (incident ids, signed status-link tokens) in spans and logs for whatever
provider or OTEL_* variables the process finds."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.domain.directory import load_directory
from services.intake.app import NO_TELEMETRY, create_app
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES


@pytest.mark.skipif(not NO_TELEMETRY, reason="this FastAPI has no telemetry of its own")
def test_intake_sends_nothing_to_a_configured_opentelemetry_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    # A provider set up by the environment (not the API's deferred proxy) and auto-configure
    # asked for: a plain FastAPI app would now trace every request.
    monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert FastAPI()._native_telemetry.enabled()

    settings = Settings(config_dir=EXAMPLES, secret_key=SecretStr("s" * 48))
    app = create_app(settings, directory=load_directory(EXAMPLES), event_log=FakeEventLog())
    assert not app._native_telemetry.enabled()
