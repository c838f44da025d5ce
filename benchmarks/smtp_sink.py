"""The peer benchmark's SMTP server, in its own process: accepts every message and reports it.

    python benchmarks/smtp_sink.py --host 127.0.0.1 --port 2525

For each accepted message it writes one line to stdout, `<time.monotonic()> <key>`, where the
key is the `X-Dooralert-Incident` header (dooralert) or `X-Bench-Alert` (Alertmanager's
email_configs set it to the alert name), `-` when neither is present. CLOCK_MONOTONIC is one
clock for every process on the machine, so the benchmark compares it with its own POST times.
It runs until SIGTERM or stdin closes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller

KEY_HEADERS = ("X-Dooralert-Incident", "X-Bench-Alert")


class Handler:
    """Accepts every message; one stdout line per message."""

    def __init__(self) -> None:
        self._parser = BytesHeaderParser()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        headers = self._parser.parsebytes(raw)
        key = next((str(headers[h]).strip() for h in KEY_HEADERS if headers.get(h)), "-")
        peer = f"{session.peer[0]}:{session.peer[1]}" if session.peer else "-"
        with self._lock:
            sys.stdout.write(f"{now:.6f} {key} {peer}\n")
            sys.stdout.flush()
        return "250 OK accepted"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    controller = Controller(Handler(), hostname=args.host, port=args.port)
    controller.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    def watch_stdin() -> None:
        sys.stdin.read()  # the benchmark went away: stop too
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
