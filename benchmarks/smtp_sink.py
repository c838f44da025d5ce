"""The peer benchmark's SMTP server, in its own process: accepts every message and reports it.

    python benchmarks/smtp_sink.py --host 127.0.0.1 --port 2525 [--rtt MS]

For each accepted message it writes one line to stdout, `<time.monotonic()> <key>`, where the
key is the `X-Dooralert-Incident` header (dooralert) or `X-Bench-Alert` (Alertmanager's
email_configs set it to the alert name), `-` when neither is present. CLOCK_MONOTONIC is one
clock for every process on the machine, so the benchmark compares it with its own POST times.
It runs until SIGTERM or stdin closes.

`--rtt MS` answers like a server MS milliseconds away: every reply (the 220 banner, EHLO/HELO,
MAIL, RCPT, DATA's 354, the reply after the body, RSET, NOOP, QUIT) is written MS ms late, an
asyncio.sleep before it (before the last line of a multi-line reply: EHLO's costs one round
trip, not one per line). The accept line is then written when the final 250 is, after its
delay. Not simulated: the TCP handshake (a real connect costs one more round trip before the
banner), TLS, bandwidth, and PIPELINING (the sink offers none, as without --rtt).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from email.parser import BytesHeaderParser
from typing import Any, AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

KEY_HEADERS = ("X-Dooralert-Incident", "X-Bench-Alert")
ACCEPTED = "250 OK accepted"

_stdout_lock = threading.Lock()


def report(key: str, peer: str) -> None:
    """One accept line, stamped now."""
    now = time.monotonic()
    with _stdout_lock:
        sys.stdout.write(f"{now:.6f} {key} {peer}\n")
        sys.stdout.flush()


class Handler:
    """Accepts every message; one stdout line per message (at once, or with --rtt when the
    delayed 250 goes out: `DistantSMTP` writes it)."""

    def __init__(self, delayed: bool = False) -> None:
        self._parser = BytesHeaderParser()
        self._delayed = delayed

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        headers = self._parser.parsebytes(raw)
        key = next((str(headers[h]).strip() for h in KEY_HEADERS if headers.get(h)), "-")
        peer = f"{session.peer[0]}:{session.peer[1]}" if session.peer else "-"
        if self._delayed:
            server.accepted = (key, peer)  # reported as the delayed 250 is written
        else:
            report(key, peer)
        return ACCEPTED


class DistantSMTP(SMTP):
    """aiosmtpd's server, each reply written `rtt` seconds late (see the module's doc)."""

    rtt = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepted: tuple[str, str] | None = None

    async def push(self, status: AnyStr) -> None:
        more = status[3:4] in ("-", b"-")  # a multi-line reply's next line follows at once
        if not more:
            await asyncio.sleep(self.rtt)
        if self.accepted is not None and status == ACCEPTED:
            report(*self.accepted)
            self.accepted = None
        await super().push(status)


class DistantController(Controller):
    def factory(self) -> SMTP:
        return DistantSMTP(self.handler, **self.SMTP_kwargs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument(
        "--rtt",
        type=float,
        default=0.0,
        metavar="MS",
        help="answer like a server MS ms away: each reply written MS ms late (default 0)",
    )
    args = ap.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    controller: Controller
    if args.rtt > 0:
        DistantSMTP.rtt = args.rtt / 1000
        controller = DistantController(Handler(delayed=True), hostname=args.host, port=args.port)
    else:
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
