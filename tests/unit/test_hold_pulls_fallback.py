"""hold_pulls (services/eventlog/pull.py): a subscription without the nats-py internals the
held pull uses (another nats-py) is consumed by FastStream's own fetch loop, instead of a held
pull failing at once every time FastStream restarts it while nothing is consumed.
(tests/integration/test_held_pull_close.py: the installed nats-py's has them.)"""

from __future__ import annotations

import asyncio
from typing import Any

from services.eventlog.pull import HeldPull, hold_pulls


class Subscriber:
    def __init__(self, subscription: Any) -> None:
        self.subscription = subscription
        self.fetched_with: list[Any] = []

    async def _consume_pull(self, cb: Any) -> None:
        self.fetched_with.append(cb)


async def _nothing(msg: Any) -> None:
    return None


async def test_a_subscription_of_another_nats_py_is_consumed_by_the_fetch_loop() -> None:
    sub = Subscriber(subscription=object())
    held = HeldPull(_nothing, capacity=2, name="router")
    assert hold_pulls(sub, held)
    await asyncio.wait_for(sub._consume_pull(cb="put"), 1.0)
    assert sub.fetched_with == ["put"]
    assert held.requests == 0
