"""Requests of the hot path (the notifier's direct gets) without nats-py's per-request
overhead.

`Client.request` makes a NUID for each reply token (a 10-digit base-62 loop in Python), awaits
the answer under `asyncio.wait_for`, and a JetStream get then lifts the answer into a
`RawStreamMsg`, parsing its timestamp header. `request` here registers the answer's future
under the client's own reply inbox with a counter token ("g" and a number: never one of
nats-py's 26-character tokens, nor one of `send_together`'s "p" ones), publishes, and awaits
it under one loop timer. `direct_last` is a JetStream direct get of the last message on a
subject, answered as nats-py's `get_msg(direct=True)` answers (404: NotFoundError; another
status: APIError; no responders: NoRespondersError), without the `RawStreamMsg`.

A client without the internals used here (another nats-py) goes through `Client.request`.
"""

from __future__ import annotations

import asyncio
from itertools import count
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

_TOKENS = count(1)
# What `request` (and jetstream.send_together) use of nats-py's client (2.x, internal).
CLIENT_INTERNALS = ("_resp_map", "_resp_sub_prefix", "_init_request_sub", "publish")
_STATUS = "Status"
_NO_RESPONDERS = "503"
_NOT_FOUND = "404"


async def request(nc: Client, subject: str, payload: bytes, *, timeout: float) -> Msg:
    """`nc.request(subject, payload, timeout=timeout)`, with the same errors (TimeoutError,
    NoRespondersError, what `publish` raises)."""
    client: Any = nc
    if not all(hasattr(client, a) for a in CLIENT_INTERNALS):
        return await nc.request(subject, payload, timeout=timeout)
    if not client._resp_sub_prefix:
        await client._init_request_sub()
    loop = asyncio.get_running_loop()
    key = f"g{next(_TOKENS)}"
    answer: asyncio.Future[Msg] = loop.create_future()
    client._resp_map[key] = answer
    timer = None
    try:
        await client.publish(subject, payload, reply=client._resp_sub_prefix.decode() + key)
        timer = loop.call_later(timeout, _expire, answer)
        msg = await answer
    finally:
        client._resp_map.pop(key, None)
        if timer is not None:
            timer.cancel()
    if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
        raise NoRespondersError
    return msg


def _expire(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(NatsTimeoutError())


async def direct_last(
    js: JetStreamContext, stream: str, subject: str
) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of the last message on `subject` in `stream`, by direct get,
    as nats-py's `js.get_last_msg(stream, subject, direct=True)` reads it, with the context's
    API prefix and timeout. Raises NotFoundError when there is none, APIError for another
    error answer, NoRespondersError when the stream does not answer direct gets."""
    ctx: Any = js
    prefix, nc = getattr(ctx, "_prefix", None), getattr(ctx, "_nc", None)
    if not isinstance(prefix, str) or nc is None:
        raw = await js.get_last_msg(stream, subject, direct=True)
        return raw.data or b"", dict(raw.headers or {})
    msg = await request(
        nc, f"{prefix}.DIRECT.GET.{stream}.{subject}", b"", timeout=float(ctx._timeout)
    )
    headers = msg.headers or {}
    if not msg.data and (status := headers.get(_STATUS)):
        if status == _NOT_FOUND:
            raise NotFoundError
        raise APIError.from_msg(msg)
    return msg.data, headers
