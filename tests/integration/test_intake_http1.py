"""The intake over a real socket with the HTTP/1.1 protocol `dooralert intake` serves it with
(httptools', one write per response): its report size limit still answers 413, a malformed
request or an endless request head 400 (never 500), and the connection or server goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx

from services.cli.http1 import OneWriteHttpToolsProtocol
from tests.integration.test_intake_served import serve  # noqa: F401 - the fixture
from tests.support import HAMLINE_KEY, report

AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}


async def raw(url: str, request: bytes) -> bytes:
    """What the server answers `request` with, read to the close."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()


async def test_a_report_too_large_is_413_and_the_connection_goes_on(serve) -> None:  # noqa: F811
    served = await serve()
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        too_large = b'{"notes": "' + b"n" * 100_000 + b'"}'
        declared = await client.post(
            "/api/v1/encounters",
            content=too_large,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(too_large), 8192):
                yield too_large[i : i + 8192]

        streamed = await client.post(
            "/api/v1/encounters",
            content=chunks(),  # no Content-Length: chunked
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        made = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
        assert made.status_code == 202 and made.json()["incident_id"]
        assert made.headers["content-length"] == str(len(made.content))


async def test_malformed_requests_and_endless_heads_are_400_and_serving_goes_on(
    serve,  # noqa: F811
) -> None:
    served = await serve()
    for request in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS to the plain port
        b"POST /api/v1/encounters HTTP/1.1\r\nHost: intake\r\nContent-Length: x\r\n\r\n",
        b"POST /api/v1/encounters HTTP/1.1\r\nHost: intake\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /report?" + b"q" * 20_000,  # a head unfinished past 16 KiB
        b"GET / HTTP/1.1\r\nHost: intake\r\n" + b"X-Pad: p\r\n" * 3_000,
    ]:
        answer = await raw(served.url, request)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        assert (
            await client.post("/api/v1/encounters", json=report(), headers=AUTH)
        ).status_code == 202


def test_the_intake_is_served_with_the_httptools_one_write_protocol() -> None:
    from pydantic import SecretStr

    from services.cli.services import intake_server_config
    from services.runtime.settings import Settings
    from tests.support import EXAMPLES

    settings = Settings(config_dir=EXAMPLES, secret_key=SecretStr("s" * 48))
    assert intake_server_config(settings, object()).http is OneWriteHttpToolsProtocol
