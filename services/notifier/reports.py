"""Each incident's report, read from the log once: a report is followed by four to eight alert
emails, and each of them fetched the same immutable event (a NATS round trip per email).

Only alerts and escalations use it; follow-ups fold the incident as the log holds it now
(main.py). A report that is not in the log yet is not remembered, so its request is retried
and reads the log again. The newest `size` incidents are kept.

`SingleFlight` shares one read among the requests that ask for the same thing at the same
time (an incident's four emails arrive together): each of them would have read the same bytes
in the same instant, and nothing is kept once the read is done.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

from schemas.events import EncounterReported

DEFAULT_SIZE = 1024

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ReportCache:
    """incident id -> its `encounter.reported` event as first read, the newest `size` kept."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = max(1, size)
        self._reports: OrderedDict[tuple[str, str], EncounterReported] = OrderedDict()

    def get(self, school_id: str, incident_id: str) -> EncounterReported | None:
        """The remembered report, or None."""
        key = (school_id, incident_id)
        report = self._reports.get(key)
        if report is not None:
            self._reports.move_to_end(key)
        return report

    def put(self, report: EncounterReported) -> None:
        """Remember `report` under its own school and incident (never another's)."""
        self._reports[(report.school_id, report.incident_id)] = report
        self._reports.move_to_end((report.school_id, report.incident_id))
        while len(self._reports) > self.size:
            self._reports.popitem(last=False)

    def __len__(self) -> int:
        return len(self._reports)


class SingleFlight(Generic[K, V]):
    """Concurrent reads of one key share the first caller's read; nothing outlives it.

    A caller arriving while a read of its key is in flight awaits that read instead of
    starting its own: it gets the answer the log gave an instant before it asked, exactly as
    if the two reads had been sent together. Once the read completes (or fails: every waiter
    gets the error) the key is forgotten, so the next caller reads the log again. A waiter
    that is cancelled does not cancel the read the others wait on.
    """

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self.reads = 0  # reads actually started, for tests

    async def read(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """The result of `read()`, shared with every caller asking for `key` meanwhile."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(read())
            self.reads += 1
            self._inflight[key] = future
            future.add_done_callback(partial(self._done, key))
        return await asyncio.shield(future)

    def _done(self, key: K, future: asyncio.Future[V]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # retrieved: every waiter may have gone

    def __len__(self) -> int:
        return len(self._inflight)
