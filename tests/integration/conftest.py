from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.domain.directory import Directory, load_directory
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.fixtures.notifier_support import WebhookServer
from tests.support import EXAMPLES, HAMLINE_KEY


@dataclass
class Pipeline:
    client: httpx.AsyncClient
    settings: Settings
    directory: Directory
    js: object

    async def report(self, body: dict, *, key: str = HAMLINE_KEY, **headers: str) -> httpx.Response:
        return await self.client.post(
            "/api/v1/encounters",
            json=body,
            headers={"Authorization": f"Bearer {key}", **headers},
        )

    async def incident(self, incident_id: str, *, key: str = HAMLINE_KEY) -> dict:
        resp = await self.client.get(
            f"/api/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    """A local HTTP server taking webhook deliveries (tests/fixtures/notifier_support.py)."""
    server = WebhookServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def intake_client(settings: Settings, js: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, directory=load_directory(EXAMPLES))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client


@pytest.fixture
async def pipeline(
    settings: Settings, js: object, intake_client: httpx.AsyncClient
) -> AsyncIterator[Pipeline]:
    """Intake (in-process ASGI), router and notifier on a real nats-server and real SMTP."""
    directory = load_directory(EXAMPLES)
    router = router_broker(settings, rules=load_rules(EXAMPLES), directory=directory)
    notifier = notifier_broker(settings, directory=directory)
    await router.start()
    await notifier.start()
    try:
        yield Pipeline(intake_client, settings, directory, js)
    finally:
        await notifier.stop()
        await router.stop()
