"""SMTP session reuse: messages/s to a local aiosmtpd, one connection per message vs the pool.

    .venv/bin/python benchmarks/smtp_reuse.py [--messages 500] [--concurrency 8]

Both runs send the same alert-sized MIME message to the same server, with `concurrency`
sends in flight; "one-shot" opens a new connection per message (aiosmtplib.send, as the
notifier did before), "pooled" uses services.notifier.smtp.SmtpPool.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from services.notifier.channels import send_email
from services.notifier.smtp import SmtpPool
from services.runtime.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.count += 1
        return "250 OK"


def message(i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[dooralert ALERT] Agents at Hamline Elementary #{i}"
    msg["From"] = "dooralert <alerts@dooralert.invalid>"
    msg["To"] = "law@district.example"
    msg["Message-ID"] = f"<bench-{i}@dooralert>"
    msg.set_content("Law-enforcement agents at Hamline Elementary.\n" * 20)
    msg.add_alternative("<p>Law-enforcement agents at Hamline Elementary.</p>" * 20, subtype="html")
    return msg


async def run(send, n: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await send(message(i))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--pool", type=int, default=4)
    args = ap.parse_args()
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_pool_size=args.pool)
    try:
        await run(lambda m: send_email(m, settings=settings), 20, 4)  # warm-up
        one_shot = await run(
            lambda m: send_email(m, settings=settings), args.messages, args.concurrency
        )
        pool = SmtpPool(settings=settings)
        pooled = await run(pool.send, args.messages, args.concurrency)
        await pool.close()
        seq_one = await run(lambda m: send_email(m, settings=settings), args.messages // 2, 1)
        pool1 = SmtpPool(settings=settings, size=1)
        seq_pooled = await run(pool1.send, args.messages // 2, 1)
        await pool1.close()
    finally:
        controller.stop()
    print(f"{args.messages} messages, {args.concurrency} in flight, pool of {args.pool}:")
    print(f"  one connection per message: {one_shot:8.0f} msg/s")
    print(
        f"  pooled sessions:            {pooled:8.0f} msg/s  "
        f"({pooled / one_shot:.1f}x; {pool.connects} connections opened)"
    )
    print(f"{args.messages // 2} messages, one at a time:")
    print(f"  one connection per message: {seq_one:8.0f} msg/s")
    print(f"  one reused session:         {seq_pooled:8.0f} msg/s  ({seq_pooled / seq_one:.1f}x)")
    print(f"  (server received {sink.count})")


if __name__ == "__main__":
    asyncio.run(main())
