"""uvicorn's pure-Python HTTP/1.1 protocol (h11), sending a response of known length in one
write() instead of two.

uvicorn writes the status line and headers when the app starts its response, then the body:
two socket writes (two syscalls, and on this VM ~1.4 ms between a report stored and its 202
read). httptools' protocol writes them apart too. Here the h11 connection holds back the
head of a response that has a Content-Length, and hands it out with the first body bytes (or
the empty end of a HEAD, 204 or 304). A response without one (the live pages' event streams,
chunked) is written as before: its head at once, then each chunk as the app sends it.
"""

from __future__ import annotations

import asyncio
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
