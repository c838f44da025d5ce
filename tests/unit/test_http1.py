"""The intake's uvicorn protocol: a response of known length goes out in one write (status line,
headers and body), byte for byte what uvicorn's own h11 protocol writes in two; a streamed
response (the live pages' events) is written as it comes; and the intake is served with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import SecretStr
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from services.cli.http1 import OneWriteH11Protocol
from services.cli.services import intake_server_config
from services.runtime.settings import Settings
from tests.support import EXAMPLES, eventually, free_port


def make_app(streamed: asyncio.Event | None = None) -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def json_answer() -> dict[str, str]:
        return {"incident_id": "inc-1"}

    @app.post("/empty", status_code=204)
    async def empty() -> Response:
        return Response(status_code=204)

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            yield "event: status\ndata: open\n\n"
            # The next chunk only once the test has seen the first: nothing is held back.
            assert streamed is not None
            await streamed.wait()
            yield "event: status\ndata: closed\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.get("/big")
    async def big() -> PlainTextResponse:
        return PlainTextResponse("x" * 300_000)

    return app


class Transport(asyncio.Transport):
    """Records each write()."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:  # as asyncio's and uvloop's transports: an empty write is no write
            self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(protocol_class: type[H11Protocol], request: bytes) -> list[bytes]:
    config = uvicorn.Config(make_app(), log_level="warning", access_log=False)
    config.load()
    protocol = protocol_class(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await eventually(lambda: protocol.cycle is not None and protocol.cycle.response_complete)
    return transport.writes


GET_JSON = b"GET /json HTTP/1.1\r\nHost: intake\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        GET_JSON,
        b"HEAD /json HTTP/1.1\r\nHost: intake\r\n\r\n",
        b"POST /empty HTTP/1.1\r\nHost: intake\r\nContent-Length: 0\r\n\r\n",
        b"GET /missing HTTP/1.1\r\nHost: intake\r\n\r\n",
        b"GET /json HTTP/1.0\r\n\r\n",
        b"GET /big HTTP/1.1\r\nHost: intake\r\n\r\n",
    ],
)
async def test_a_response_of_known_length_is_one_write_of_what_h11_wrote_in_two(
    request_bytes: bytes,
) -> None:
    before = await exchange(H11Protocol, request_bytes)
    after = await exchange(OneWriteH11Protocol, request_bytes)
    # A HEAD answer and a 204 have no body to write.
    assert len(before) == (1 if request_bytes.startswith((b"HEAD", b"POST")) else 2)
    assert len(after) == 1
    assert after[0] == b"".join(before)
    assert after[0].startswith(b"HTTP/1.1 ")


async def test_keep_alive_requests_each_get_one_write() -> None:
    writes = await exchange(OneWriteH11Protocol, GET_JSON + GET_JSON)
    await asyncio.sleep(0.05)  # the second request's cycle
    assert len(writes) == 2 and writes[0] == writes[1]
    assert writes[0].endswith(b'{"incident_id":"inc-1"}')


async def test_an_event_stream_is_written_as_the_app_sends_it() -> None:
    streamed = asyncio.Event()
    config = uvicorn.Config(make_app(streamed), log_level="warning", access_log=False)
    config.load()
    protocol = OneWriteH11Protocol(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /events HTTP/1.1\r\nHost: intake\r\n\r\n")
    # Head and first event are out while the stream is still open.
    await eventually(lambda: any(b"data: open" in w for w in transport.writes))
    assert transport.writes[0].startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in transport.writes[0].lower()
    assert not any(b"data: closed" in w for w in transport.writes)
    streamed.set()
    await eventually(lambda: protocol.cycle is not None and protocol.cycle.response_complete)
    assert any(b"data: closed" in w for w in transport.writes)


async def test_the_intake_is_served_with_it_and_answers_and_streams() -> None:
    streamed = asyncio.Event()
    settings = Settings(
        config_dir=EXAMPLES,
        secret_key=SecretStr("s" * 48),
        http_host="127.0.0.1",
        http_port=free_port(),
    )
    config = intake_server_config(settings, make_app(streamed))
    assert config.http is OneWriteH11Protocol
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=5)
        url = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            for _ in range(3):  # one connection, kept alive
                answer = await client.get("/json")
                assert answer.status_code == 200 and answer.json() == {"incident_id": "inc-1"}
            assert len((await client.get("/big")).content) == 300_000
            async with client.stream("GET", "/events") as stream:
                lines = stream.aiter_lines()
                assert await anext(lines) == "event: status"
                assert await anext(lines) == "data: open"
                streamed.set()
                assert [line async for line in lines if line] == [
                    "event: status",
                    "data: closed",
                ]
    finally:
        server.should_exit = True
        await task
