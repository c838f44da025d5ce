"""The intake's token buckets (services/intake/security.py): bursts, refill, bounded memory."""

from __future__ import annotations

from services.intake.security import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_limit_passes_then_one_waits_for_the_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    assert [limiter.take("hamline") for _ in range(10)] == [0.0] * 10
    wait = limiter.take("hamline")
    assert 5.9 < wait <= 6.0  # 10 a minute: one every 6 s
    clock.now += wait
    assert limiter.take("hamline") == 0.0


def test_a_flood_of_new_addresses_keeps_memory_bounded_and_still_limits_the_latest() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    limiter.MAX_KEYS = 100
    for i in range(1000):
        clock.now += 0.001
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) <= 100
    assert limiter.take("10.0.3.231") > 0  # the most recent address is still held back
