from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.eventlog import connect, provision
from services.runtime.settings import Settings
from tests.support import EXAMPLES, TEST_SECRET, NatsServer, SmtpServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[object]:
    """A JetStream context on a freshly provisioned server."""
    nc = await connect(nats_server.url, name="tests")
    ctx = nc.jetstream()
    await provision(ctx)
    yield ctx
    await nc.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(nats_server: NatsServer, smtp: SmtpServer) -> Settings:
    return Settings(
        nats_url=nats_server.url,
        config_dir=EXAMPLES,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        max_attempts=4,
        http_host="127.0.0.1",
        http_port=8080,
    )


@pytest.fixture
def examples() -> Path:
    return EXAMPLES
