"""uvicorn's HTTP/1.1 protocols, sending a response of known length in one write() instead of
two: httptools' (the intake's, `intake_protocol`) and h11's (pure Python: where httptools is
not installed).

uvicorn writes the status line and headers when the app starts its response, then the body:
two socket writes (two syscalls, and on this VM ~1.4 ms between a report stored and its 202
read). Here the head of a response that has a Content-Length (or no body: HEAD, 204, 304) is
held back and written with the first body bytes (or the empty end). A response without one
(the live pages' event streams, chunked) is written as before: its head at once, then each
chunk as the app sends it. The bytes are uvicorn's own, only written together.

httptools (llhttp) buffers a request head of any size, where h11 refuses one still unfinished
past 16 KiB (400, connection closed): the httptools protocol here refuses it the same way.
"""

from __future__ import annotations

import asyncio
import importlib.util
import weakref
from typing import Any, overload

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState


class OneWriteConnection(h11.Connection):
    """An h11 server connection whose response head, when a Content-Length frames the body,
    comes out of `send` together with the body's first bytes (the head's own `send` returns
    b"", which uvicorn's write skips)."""

    _held = b""

    @overload
    def send(self, event: h11.ConnectionClosed) -> None: ...
    @overload
    def send(
        self,
        event: h11.Request | h11.InformationalResponse | h11.Response | h11.Data | h11.EndOfMessage,
    ) -> bytes: ...
    @overload
    def send(self, event: h11.Event) -> bytes | None: ...
    def send(self, event: h11.Event) -> bytes | None:
        out = super().send(event)
        if type(event) is h11.Response and _has_content_length(event):
            self._held = out or b""
            return b""
        if self._held and out is not None:
            # The body's first bytes (Data), or the end of an empty body (EndOfMessage).
            out, self._held = self._held + out, b""
        return out


def _has_content_length(response: h11.Response) -> bool:
    return any(name == b"content-length" for name, _ in response.headers)


class OneWriteH11Protocol(H11Protocol):
    """uvicorn's H11Protocol with a `OneWriteConnection` (pass as uvicorn.Config(http=...))."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        size = config.h11_max_incomplete_event_size  # None: h11's default, as uvicorn's
        self.conn = (
            OneWriteConnection(h11.SERVER)
            if size is None
            else OneWriteConnection(h11.SERVER, max_incomplete_event_size=size)
        )


HTTPTOOLS = importlib.util.find_spec("httptools") is not None
# h11's own default max_incomplete_event_size (uvicorn's when h11_max_incomplete_event_size is
# None): a request head still unfinished past this many bytes at the end of a read is refused.
MAX_HEAD_SIZE = 16 * 1024


def intake_protocol() -> type[asyncio.Protocol]:
    """The protocol uvicorn serves the intake with: httptools' (C, llhttp) where it is
    installed (a declared dependency), else h11's."""
    return OneWriteHttpToolsProtocol if HTTPTOOLS else OneWriteH11Protocol


if HTTPTOOLS:
    from uvicorn.protocols.http import httptools_impl

    class _OneWriteTransport(asyncio.Transport):
        """What one httptools request cycle writes to: the head of a response without chunked
        framing (a Content-Length, or none at all: HEAD, 204, 304) is held back and written with
        the next write (the body), or before the connection is closed, or when the response ends
        with no body to write (HEAD). A chunked head, and anything before the head (100 Continue),
        is written at once."""

        def __init__(
            self, transport: asyncio.Transport, cycle: httptools_impl.RequestResponseCycle
        ) -> None:
            super().__init__()
            self._transport = transport
            # Weak: the cycle holds this transport, and a reference cycle would leave each
            # request's objects to the garbage collector.
            self._cycle = weakref.ref(cycle)
            self._head_seen = False
            self._held = b""
            self._completed = cycle.on_response

        def write(self, data: bytes | bytearray | memoryview) -> None:
            if self._held:
                data, self._held = self._held + data, b""
            elif not self._head_seen and (cycle := self._cycle()) and cycle.response_started:
                # The cycle writes the status line and headers in one write, once it has decided
                # the framing.
                self._head_seen = True
                if not cycle.chunked_encoding:
                    self._held = bytes(data)
                    return
            self._transport.write(data)

        def flush(self) -> None:
            if self._held:
                held, self._held = self._held, b""
                self._transport.write(held)

        def response_completed(self) -> None:
            """The cycle's on_response: a HEAD answer's head has no body to go with."""
            self.flush()
            self._completed()

        def close(self) -> None:
            # uvicorn closes after a response with `connection: close`, and when the app fails
            # after starting one: what it had written goes out first, as it would have.
            self.flush()
            self._transport.close()

        def is_closing(self) -> bool:
            return self._transport.is_closing()

        def abort(self) -> None:
            self._held = b""
            self._transport.abort()

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return self._transport.get_extra_info(name, default)

    class OneWriteHttpToolsProtocol(httptools_impl.HttpToolsProtocol):
        """uvicorn's HttpToolsProtocol writing a response of known length in one write (pass as
        uvicorn.Config(http=...)), and refusing a request head that grows past
        h11_max_incomplete_event_size (16 KiB by default) with a 400, as the h11 protocol does:
        httptools alone has no limit, and buffers a head (its URL, its headers) of any size."""

        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            size = config.h11_max_incomplete_event_size
            self.max_head_size = MAX_HEAD_SIZE if size is None else size
            # Bytes of an unfinished request head (None: none is being read), counted per
            # data_received: from the chunk the head begins in, all of it but the body bytes
            # parsed before the head (httptools tells no offsets). So a few bytes more than the
            # head where a chunked body's framing or an earlier pipelined head precede it.
            self._head: int | None = None
            self._body_fed = 0

        def data_received(self, data: bytes) -> None:
            self._body_fed = 0
            super().data_received(data)
            if self._head is not None:
                self._head += len(data)
                if self._head > self.max_head_size and not self.transport.is_closing():
                    self._head = None
                    msg = "Invalid HTTP request received."
                    self.logger.warning(msg)
                    self.send_400_response(msg)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head = -self._body_fed

        def on_body(self, body: bytes) -> None:
            self._body_fed += len(body)
            super().on_body(body)

        def on_headers_complete(self) -> None:
            self._head = None
            previous = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            # A new request's cycle (not a websocket upgrade), its task not yet started.
            if cycle is not previous and not cycle.response_started:
                sink = _OneWriteTransport(self.transport, cycle)
                cycle.transport = sink
                cycle.on_response = sink.response_completed
