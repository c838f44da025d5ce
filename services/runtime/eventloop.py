"""The event loop every service runs on: uvloop (libuv) where it is installed, a declared
dependency on Linux and macOS; asyncio's own loop otherwise or when DOORALERT_EVENT_LOOP says
`asyncio`. Each service's command calls `install` once, before its loop starts."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Literal

EventLoopName = Literal["auto", "uvloop", "asyncio"]


def chosen(name: EventLoopName) -> Literal["uvloop", "asyncio"]:
    """The loop `name` stands for here: `auto` is uvloop when it can be imported."""
    if name == "asyncio":
        return "asyncio"
    if importlib.util.find_spec("uvloop") is None:
        if name == "uvloop":
            raise RuntimeError("DOORALERT_EVENT_LOOP=uvloop but uvloop is not installed")
        return "asyncio"
    return "uvloop"


def install(name: EventLoopName = "auto") -> Literal["uvloop", "asyncio"]:
    """Make `asyncio.run` (and uvicorn, given the same name) use the chosen loop in this
    process; returns which one."""
    loop = chosen(name)
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)
    return loop
