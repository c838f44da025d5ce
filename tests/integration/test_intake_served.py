"""The intake served by uvicorn exactly as `dooralert intake` serves it, over a real socket:
forwarded headers are believed only from DOORALERT_TRUSTED_PROXIES, and a viewer who closes
the incident page gives back its live-stream place at once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from services.cli.services import intake_server_config
from services.domain.directory import load_directory
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.service.fakes import FakeEventLog
from tests.support import EXAMPLES, HAMLINE_KEY, eventually, report


@dataclass
class Served:
    url: str
    app: FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start the intake under uvicorn with the given settings; returns its URL and app."""
    async with AsyncExitStack() as stack:

        async def start(trusted_proxies: str = "", **options: Any) -> Served:
            settings = Settings(
                config_dir=EXAMPLES,
                secret_key=SecretStr("s" * 48),
                http_host="127.0.0.1",
                http_port=free_port(),
                trusted_proxies=trusted_proxies,
                rate_limit_auth_failures_per_minute=3,
                **options,
            )
            app = create_app(settings, directory=load_directory(EXAMPLES), event_log=FakeEventLog())
            server = uvicorn.Server(intake_server_config(settings, app))
            task = asyncio.create_task(server.serve())

            async def stop() -> None:
                server.should_exit = True
                await task

            stack.push_async_callback(stop)
            await eventually(lambda: server.started, timeout=5)
            return Served(f"http://127.0.0.1:{settings.http_port}", app)

        yield start


async def wrong_keys_from_forged_addresses(url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url) as client:
        return [
            (
                await client.post(
                    "/api/v1/encounters",
                    json=report(),
                    headers={
                        "Authorization": "Bearer dak_guess",
                        "X-Forwarded-For": f"203.0.113.{i}",
                    },
                )
            ).status_code
            for i in range(count)
        ]


async def test_varied_forwarded_for_headers_from_an_untrusted_client_are_still_limited(serve):
    served = await serve("")
    assert await wrong_keys_from_forged_addresses(served.url, 5) == [401, 401, 401, 429, 429]


async def test_a_configured_proxy_passes_on_each_clients_own_address(serve):
    served = await serve("127.0.0.1")
    # Through the trusted proxy, each forwarded client is limited on its own.
    assert await wrong_keys_from_forged_addresses(served.url, 5) == [401] * 5


def test_a_malformed_trusted_proxy_setting_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        Settings(trusted_proxies="10.0.0.1,proxy.internal")
    assert Settings(trusted_proxies="10.0.0.1, 10.1.0.0/16").trusted_proxies


async def test_closing_the_incident_page_frees_its_live_stream_place_at_once(serve):
    served = await serve(live_streams_per_token=1, live_max_seconds=60)
    hub = served.app.state.intake.live
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        made = await client.post(
            "/api/v1/encounters", json=report(), headers={"Authorization": f"Bearer {HAMLINE_KEY}"}
        )
        page = urlsplit(made.json()["page_url"])
        events = f"{page.path}/events?{page.query}"
        # A page reloaded three times on a link allowed one stream: each reload closes the
        # old stream, whose place is free again before the new one asks.
        for _ in range(3):
            async with client.stream("GET", events) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("event: status"):
                        break
            await eventually(lambda: hub.pollers == 0, timeout=5)
