"""A local SMTP server for development: saves every message it accepts as an .eml file."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from services.runtime.logging import get_logger

log = get_logger("dooralert.outbox")


class OutboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
        tmp = self.directory / (name + ".tmp")
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        tmp.write_bytes(content)
        os.replace(tmp, self.directory / name)  # readers never see a half-written file
        log.info("outbox.saved", file=name, recipients=len(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def serve(directory: Path, *, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM."""
    controller = Controller(OutboxHandler(directory), hostname=host, port=port)
    controller.start()
    log.info("outbox.listening", host=host, port=port, directory=str(directory))
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
