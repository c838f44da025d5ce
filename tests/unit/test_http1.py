"""The intake's uvicorn protocols: a response of known length goes out in one write (status line,
headers and body), byte for byte what uvicorn's own protocol (httptools', and h11's where
httptools is missing) writes in two; a streamed response (the live pages' events) is written as
it comes; a request head is limited to 16 KiB with either parser; and the intake is served with
the httptools one."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import SecretStr
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from services.cli import http1
from services.cli.http1 import OneWriteH11Protocol, OneWriteHttpToolsProtocol, intake_protocol
from services.cli.services import intake_server_config
from services.runtime.settings import Settings
from tests.support import EXAMPLES, eventually, free_port

# Each one-write protocol and the uvicorn protocol whose bytes it must write.
PAIRS = [(H11Protocol, OneWriteH11Protocol), (HttpToolsProtocol, OneWriteHttpToolsProtocol)]
PAIR_IDS = ["h11", "httptools"]


def make_app(streamed: asyncio.Event | None = None) -> Any:
    app = FastAPI()

    @app.api_route("/json", methods=["GET", "HEAD"])
    async def json_answer() -> dict[str, str]:
        return {"incident_id": "inc-1"}

    @app.post("/empty", status_code=204)
    async def empty() -> Response:
        return Response(status_code=204)

    @app.get("/unchanged")
    async def unchanged() -> Response:
        return Response(status_code=304, headers={"etag": '"v1"'})

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/closing")
    async def closing() -> PlainTextResponse:
        return PlainTextResponse("bye", headers={"connection": "close"})

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("before the response starts")

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            yield "event: status\ndata: open\n\n"
            # The next chunk only once the test has seen the first: nothing is held back.
            if streamed is not None:
                await streamed.wait()
            yield "event: status\ndata: closed\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.get("/big")
    async def big() -> PlainTextResponse:
        return PlainTextResponse("x" * 300_000)

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        # Raw ASGI apps that break off between the response's start and its body.
        path = scope.get("path")
        if path in ("/breaks", "/abandons"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 202,
                    "headers": [(b"content-length", b"5")],
                }
            )
            if path == "/breaks":
                raise RuntimeError("after the response started")
            return
        await app(scope, receive, send)

    return asgi


class Transport(asyncio.Transport):
    """Records each write(); closed, tells the protocol its connection is lost (as a socket's)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:  # as asyncio's: nothing is written once closed
            return
        if data:  # as asyncio's and uvloop's transports: an empty write is no write
            self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed and self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connection:
    """One protocol instance on a recording transport, fed request bytes as a socket would."""

    def __init__(self, protocol_class: type[asyncio.Protocol], **options: Any) -> None:
        self.streamed = asyncio.Event()
        config = uvicorn.Config(
            make_app(self.streamed), log_level="warning", access_log=False, **options
        )
        config.load()
        self.state = ServerState()
        self.protocol: Any = protocol_class(config, self.state, {})  # type: ignore[call-arg]
        self.transport = Transport()
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            if not self.transport.closed:
                self.protocol.data_received(chunk)

    async def answered(self, responses: int = 1) -> list[bytes]:
        """The writes, once `responses` are complete or the connection is closed."""
        await eventually(
            lambda: self.transport.closed or self.state.total_requests >= responses, timeout=5
        )
        await asyncio.sleep(0.01)  # anything (wrongly) written after
        return self.transport.writes


async def exchange(
    protocol_class: type[asyncio.Protocol], *chunks: bytes, responses: int = 1
) -> tuple[list[bytes], bool]:
    """The writes answering `chunks`, and whether the connection was closed."""
    connection = Connection(protocol_class)
    connection.feed(*chunks)
    writes = await connection.answered(responses)
    return writes, connection.transport.closed


GET_JSON = b"GET /json HTTP/1.1\r\nHost: intake\r\n\r\n"
HEAD_JSON = b"HEAD /json HTTP/1.1\r\nHost: intake\r\n\r\n"
POST_EMPTY = b"POST /empty HTTP/1.1\r\nHost: intake\r\nContent-Length: 0\r\n\r\n"
POST_ECHO = b"POST /echo HTTP/1.1\r\nHost: intake\r\nContent-Length: 5\r\n\r\nhello"

KNOWN_LENGTH = {
    "json": GET_JSON,
    "head": HEAD_JSON,
    "204": POST_EMPTY,
    "304": b"GET /unchanged HTTP/1.1\r\nHost: intake\r\n\r\n",
    "404": b"GET /missing HTTP/1.1\r\nHost: intake\r\n\r\n",
    "405": b"DELETE /json HTTP/1.1\r\nHost: intake\r\n\r\n",
    "500": b"GET /fails HTTP/1.1\r\nHost: intake\r\n\r\n",
    "http/1.0": b"GET /json HTTP/1.0\r\n\r\n",
    "connection close": b"GET /json HTTP/1.1\r\nHost: intake\r\nConnection: close\r\n\r\n",
    "app closes": b"GET /closing HTTP/1.1\r\nHost: intake\r\n\r\n",
    "body": POST_ECHO,
    "300 kB": b"GET /big HTTP/1.1\r\nHost: intake\r\n\r\n",
}


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("request_bytes", KNOWN_LENGTH.values(), ids=KNOWN_LENGTH.keys())
async def test_a_response_of_known_length_is_one_write_of_what_uvicorn_wrote_in_two(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol], request_bytes: bytes
) -> None:
    before, closed_before = await exchange(uvicorns, request_bytes)
    after, closed_after = await exchange(ours, request_bytes)
    # A HEAD answer, a 204 and a 304 have no body to write.
    bodiless = request_bytes.startswith((b"HEAD", b"POST /empty", b"GET /unchanged"))
    assert len(before) == (1 if bodiless else 2)
    assert len(after) == 1
    assert after[0] == b"".join(before)
    assert after[0].startswith(b"HTTP/1.1 ")
    assert closed_after == closed_before


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
async def test_pipelined_and_kept_alive_requests_each_get_one_write(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol]
) -> None:
    requests = [GET_JSON, HEAD_JSON, POST_EMPTY, POST_ECHO, GET_JSON]
    before, _ = await exchange(uvicorns, b"".join(requests), responses=len(requests))
    after, closed = await exchange(ours, b"".join(requests), responses=len(requests))
    assert len(after) == len(requests) and not closed
    assert b"".join(after) == b"".join(before)
    assert after[0] == after[-1] and after[0].endswith(b'{"incident_id":"inc-1"}')
    assert after[3].endswith(b"\r\n\r\nhello")
    # Kept alive: one request after another on the same connection.
    connection = Connection(ours)
    for n, request in enumerate(requests, start=1):
        connection.feed(request)
        assert len(await connection.answered(n)) == n
    assert connection.transport.writes == after


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol]
) -> None:
    head = (
        b"POST /echo HTTP/1.1\r\nHost: intake\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    written = []
    for protocol_class in (uvicorns, ours):
        connection = Connection(protocol_class)
        connection.feed(head)
        await eventually(lambda c=connection: c.transport.writes, timeout=5)  # type: ignore[misc]
        assert connection.transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        connection.feed(b"hello")
        written.append(await connection.answered())
    before, after = written
    assert len(after) == 2 and b"".join(after) == b"".join(before)
    assert after[1].startswith(b"HTTP/1.1 200 ") and after[1].endswith(b"\r\n\r\nhello")


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("path", ["/breaks", "/abandons"])
async def test_an_app_that_breaks_off_after_starting_gets_the_connection_closed(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol], path: str
) -> None:
    request = b"GET %s HTTP/1.1\r\nHost: intake\r\n\r\n" % path.encode()
    before, closed_before = await exchange(uvicorns, request)
    after, closed_after = await exchange(ours, request)
    assert closed_before and closed_after
    # The client sees a response cut short (not an empty one it might send again)...
    if ours is OneWriteHttpToolsProtocol:
        assert after == before and after[0].startswith(b"HTTP/1.1 202 ")
    else:  # ...except from h11's, which drops the head it held.
        assert after == [] and before[0].startswith(b"HTTP/1.1 202 ")


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
async def test_an_event_stream_is_written_as_the_app_sends_it(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol]
) -> None:
    written = []
    for protocol_class in (uvicorns, ours):
        connection = Connection(protocol_class)
        connection.feed(b"GET /events HTTP/1.1\r\nHost: intake\r\n\r\n")
        writes = connection.transport.writes
        # Head and first event are out while the stream is still open.
        await eventually(lambda w=writes: any(b"data: open" in x for x in w))  # type: ignore[misc]
        assert writes[0].startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in writes[0].lower()
        assert not any(b"data: closed" in w for w in writes)
        connection.streamed.set()
        written.append(await connection.answered())
        assert any(b"data: closed" in w for w in writes)
    before, after = written
    assert after == before  # the same writes, chunk by chunk


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
async def test_each_request_is_freed_as_it_ends_not_left_to_the_garbage_collector(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol]
) -> None:
    left = {}
    for protocol_class in (uvicorns, ours):
        connection = Connection(protocol_class)
        connection.feed(GET_JSON)
        await connection.answered(1)
        gc.collect()
        gc.disable()
        try:
            for n in range(2, 202):
                connection.feed(GET_JSON)
                while connection.state.total_requests < n:
                    await asyncio.sleep(0)
            left[protocol_class] = gc.collect()
        finally:
            gc.enable()
    # No reference cycle per request (the held head's transport and its request's cycle).
    assert left[ours] <= left[uvicorns] + 20 < 200


MALFORMED = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "no method": b"/json HTTP/1.1\r\nHost: intake\r\n\r\n",
    "bad version": b"GET /json HTTP/9.9\r\nHost: intake\r\n\r\n",
    "header without colon": b"GET /json HTTP/1.1\r\nHost intake\r\n\r\n",
    "space before colon": b"GET /json HTTP/1.1\r\nHost : intake\r\n\r\n",
    "control in header": b"GET /json HTTP/1.1\r\nHost: in\x01take\r\n\r\n",
    "bad content-length": b"POST /echo HTTP/1.1\r\nHost: intake\r\nContent-Length: x\r\n\r\n",
    "two content-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: intake\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "content-length and chunked": (
        b"POST /echo HTTP/1.1\r\nHost: intake\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: intake\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    ),
    "folded header": b"GET /json HTTP/1.1\r\nHost: intake\r\nX-A: a\r\n b\r\n\r\n",
    "non-ascii path": b"GET /j\xffson HTTP/1.1\r\nHost: intake\r\n\r\n",
}
# What h11 lets through (a version other than 1.x, a control character in a header value, a
# body framed both ways, an obsolete folded header) and httptools (llhttp, strict) refuses.
H11_ACCEPTS = {"bad version", "control in header", "content-length and chunked", "folded header"}


@pytest.mark.parametrize(("uvicorns", "ours"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("malformed", MALFORMED.keys())
async def test_a_malformed_request_is_answered_400_and_closed(
    uvicorns: type[asyncio.Protocol], ours: type[asyncio.Protocol], malformed: str
) -> None:
    before, closed_before = await exchange(uvicorns, MALFORMED[malformed])
    after, closed = await exchange(ours, MALFORMED[malformed])
    assert b"".join(after) == b"".join(before) and closed == closed_before
    if ours is OneWriteH11Protocol and malformed in H11_ACCEPTS:
        assert b"".join(after).startswith(b"HTTP/1.1 200 ")
    else:
        assert b"".join(after).startswith(b"HTTP/1.1 400 ") and closed


def head_of(size: int) -> list[bytes]:
    """A GET whose head is `size` bytes, in pieces of 1 kB (a slow client's)."""
    start = b"GET /json HTTP/1.1\r\nHost: intake\r\nX-Pad: "
    head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return [head[i : i + 1000] for i in range(0, size, 1000)]


@pytest.mark.parametrize("protocol_class", [OneWriteH11Protocol, OneWriteHttpToolsProtocol])
async def test_a_request_head_is_limited_to_16_kib_as_h11_limits_it(
    protocol_class: type[asyncio.Protocol],
) -> None:
    assert http1.MAX_HEAD_SIZE == h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
    ok = Connection(protocol_class)
    ok.feed(*head_of(16_000))
    assert (await ok.answered())[0].startswith(b"HTTP/1.1 200 ")
    for pieces in [
        head_of(20_000),  # one header too long
        [b"GET /json HTTP/1.1\r\n"] + [b"X-A: %d\r\n" % i for i in range(3000)],  # too many
        [b"GET /"] + [b"a" * 1000] * 20,  # a URL too long
    ]:
        connection = Connection(protocol_class)
        connection.feed(*pieces)
        # Refused before the head ends (its end was never sent), and nothing read after.
        assert b"".join(await connection.answered()).startswith(b"HTTP/1.1 400 ")
        assert connection.transport.closed and connection.state.total_requests == 0


@pytest.mark.parametrize("protocol_class", [OneWriteH11Protocol, OneWriteHttpToolsProtocol])
async def test_the_head_limit_follows_h11_max_incomplete_event_size(
    protocol_class: type[asyncio.Protocol],
) -> None:
    small = Connection(protocol_class, h11_max_incomplete_event_size=4096)
    small.feed(*head_of(6_000))
    assert b"".join(await small.answered()).startswith(b"HTTP/1.1 400 ")
    large = Connection(protocol_class, h11_max_incomplete_event_size=64 * 1024)
    large.feed(*head_of(40_000))
    assert (await large.answered())[0].startswith(b"HTTP/1.1 200 ")


async def test_a_large_body_before_the_next_head_is_not_counted_in_it() -> None:
    # A 40 kB body and the start of the next request in one read: only the head is counted.
    body = b"b" * 40_000
    first = b"POST /echo HTTP/1.1\r\nHost: intake\r\nContent-Length: 40000\r\n\r\n" + body
    second = head_of(10_000)
    connection = Connection(OneWriteHttpToolsProtocol)
    connection.feed(first + second[0], *second[1:])
    writes = await connection.answered(2)
    assert len(writes) == 2 and not connection.transport.closed
    assert writes[0].endswith(body) and writes[1].startswith(b"HTTP/1.1 200 ")


def test_the_intake_protocol_is_httptools_one_and_h11_one_without_httptools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert intake_protocol() is OneWriteHttpToolsProtocol
    monkeypatch.setattr(http1, "HTTPTOOLS", False)
    assert intake_protocol() is OneWriteH11Protocol


async def test_the_intake_is_served_with_it_and_answers_and_streams() -> None:
    settings = Settings(
        config_dir=EXAMPLES,
        secret_key=SecretStr("s" * 48),
        http_host="127.0.0.1",
        http_port=free_port(),
    )
    app = make_app()
    config = intake_server_config(settings, app)
    assert config.http is OneWriteHttpToolsProtocol
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
            assert (await client.post("/echo", content=b"z" * 100_000)).content == b"z" * 100_000
            assert (await client.head("/json")).headers["content-length"] == "23"
            async with client.stream("GET", "/events") as stream:
                lines = stream.aiter_lines()
                assert await anext(lines) == "event: status"
                assert await anext(lines) == "data: open"
                # make_app() was given no event to wait on: the stream goes on and ends.
                assert [line async for line in lines if line] == [
                    "event: status",
                    "data: closed",
                ]
            assert (await client.get("/json")).status_code == 200
        # A head that is still unfinished at 20 kB: refused, and the connection closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.http_port)
        writer.write(b"GET /json HTTP/1.1\r\nHost: intake\r\nX-Pad: " + b"p" * 20_000)
        answer = await asyncio.wait_for(reader.read(), timeout=5)  # to the server's close
        assert answer.startswith(b"HTTP/1.1 400 ")
        writer.close()
    finally:
        server.should_exit = True
        await task
