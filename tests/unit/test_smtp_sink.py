"""The peer benchmark's SMTP sink (benchmarks/smtp_sink.py): with --rtt each reply goes out that
late, once per reply (not per line), and an email is stamped when its final 250 goes out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from benchmarks import peer_parts as parts
from benchmarks import pipeline as pl

RTT = 0.1  # seconds; large beside the sink's own work, so the bounds below are not flaky


def _sink(work: Path, rtt_ms: float) -> Iterator[parts.Sink]:
    (work / "logs").mkdir()
    sink = parts.start_sink(work, rtt_ms)
    try:
        yield sink
    finally:
        pl._children.remove(("smtp-sink", sink.proc))  # type: ignore[arg-type]
        sink.proc.terminate()
        sink.proc.wait(10)


@pytest.fixture
def distant(tmp_path: Path) -> Iterator[parts.Sink]:
    yield from _sink(tmp_path, RTT * 1000)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[parts.Sink]:
    yield from _sink(tmp_path, 0)


def _message(key: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = "sink@bench.invalid", "law-oncall@district.example"
    msg["Subject"], msg["X-Bench-Alert"] = "sink test", key
    msg.set_content("Immigration enforcement at Front entrance, door 3.")
    return msg


async def test_every_reply_goes_out_one_round_trip_late(distant: parts.Sink) -> None:
    smtp = aiosmtplib.SMTP(hostname=pl.HOST, port=distant.port)
    t0 = time.monotonic()
    await smtp.connect()  # the banner; aiosmtplib sends EHLO at once after it
    t1 = time.monotonic()
    assert 2 * RTT * 0.95 <= t1 - t0 < 3 * RTT  # banner + EHLO: two replies, EHLO's lines as one
    await smtp.send_message(_message("one"))  # MAIL, RCPT, DATA (354), the body (250)
    t2 = time.monotonic()
    assert 4 * RTT * 0.95 <= t2 - t1 < 6 * RTT
    assert await distant.wait(["one"], 1, 5)
    accepted = distant.nth("one", 1)
    assert t1 + 4 * RTT * 0.95 <= accepted <= t2  # stamped as the delayed 250 goes out
    await smtp.noop()
    t3 = time.monotonic()
    assert RTT * 0.95 <= time.monotonic() - t2 < 3 * RTT
    await smtp.quit()
    assert RTT * 0.95 <= time.monotonic() - t3 < 3 * RTT
    assert distant.count("one") == 1


async def test_without_rtt_the_sink_answers_at_once(local: parts.Sink) -> None:
    smtp = aiosmtplib.SMTP(hostname=pl.HOST, port=local.port)
    t0 = time.monotonic()
    await smtp.connect()
    await smtp.send_message(_message("two"))
    t1 = time.monotonic()
    await smtp.quit()
    assert t1 - t0 < RTT
    assert await local.wait(["two"], 1, 5)
    assert t0 <= local.nth("two", 1) <= t1


async def test_the_smtp_limit_is_measured_with_the_delay(distant: parts.Sink) -> None:
    seconds = await parts.smtp_limit(distant, 8, 4)  # two messages a session, 4 replies each
    assert 10 * RTT * 0.95 <= seconds < 14 * RTT  # banner, EHLO, then 2 x 4 replies
    assert distant.total == 8
