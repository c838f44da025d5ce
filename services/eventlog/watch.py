"""A service's watch over its own durable consumers: while it runs, every few seconds it
compares each consumer on the server with the contract, and a paused, deleted or redefined one
stops the service loudly (an error log and a non-zero exit) instead of leaving it running and
consuming nothing. Only `dooralert provision` repairs the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from faststream import FastStream
from faststream.exceptions import IncorrectState
from faststream.nats import NatsBroker
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from services.eventlog.connection import EXIT_NATS_LOST, ConnectionGuard, NatsRefused
from services.eventlog.contract import ConsumerCheck, check_consumer, contract_consumer
from services.runtime.healthserver import Checks, HealthServer
from services.runtime.logging import get_logger
from services.runtime.metrics import NATS_CONNECTED

log = get_logger("dooralert.watch")
EXIT_DRIFT = 3  # the exit code of a service stopped because a consumer drifted


async def check_own(
    js: JetStreamContext, names: Sequence[str], *, timeout: float = 2.0
) -> list[str]:
    """What is wrong with the durable consumers `names` (empty: all keep the contract).
    A NATS failure (timeout, reconnecting) raises: it says nothing about the consumers."""
    problems: list[str] = []
    for name in names:
        stream, want = contract_consumer(name)
        info: ConsumerInfo | None
        try:
            info = await js.consumer_info(stream, name, timeout=timeout)
        except NotFoundError:
            info = None
        check: ConsumerCheck = check_consumer(info, stream, want)
        problems += check.problems
    return problems


class ConsumerWatch:
    """Checks `names` every `every` seconds; on the first problem logs it as an error, keeps
    it in `failure` and calls `stop` (which should end the process with EXIT_DRIFT)."""

    def __init__(self, names: Sequence[str], *, every: float, stop: Callable[[], None]) -> None:
        self.names, self.every, self.stop = list(names), every, stop
        self.failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def check(self, js: JetStreamContext) -> bool:
        """One check; False (and `failure` set, logged) when a consumer drifted. `every` <= 0
        turns the watch off (logged loudly at start): for a test that shortens a consumer's
        ack_wait on purpose, never for production."""
        if self.every <= 0:
            log.warning("consumers.watch_off", consumers=self.names)
            return True
        try:
            problems = await check_own(js, self.names)
        except (NatsError, TimeoutError, OSError) as exc:
            # Unreachable is not drift: the connection reconnects and the next check decides.
            log.warning("consumers.unchecked", error=type(exc).__name__)
            return True
        if not problems:
            return True
        self.failure = "; ".join(problems)
        log.error(
            "consumers.drifted",
            problems=problems,
            action="stopping; run `dooralert provision` to restore the consumers",
        )
        return False

    def start(self, js: JetStreamContext) -> None:
        """Check in the background until `close` or the first problem (then `stop()`)."""
        if self.every <= 0:
            return

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.every)
                try:
                    ok = await self.check(js)
                except Exception as exc:  # a dead watch must not pass silently
                    log.exception("consumers.watch_failed")
                    self.failure = f"the consumer watch failed: {type(exc).__name__}"
                    ok = False
                if not ok:
                    self.stop()
                    return

        self._task = asyncio.create_task(loop())

    async def close(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _connected(broker: NatsBroker) -> bool:
    try:
        return bool(broker.connection.is_connected)
    except IncorrectState:  # not connected yet, or stopped
        return False


async def run_watched(
    app: FastStream,
    broker: NatsBroker,
    names: Sequence[str],
    *,
    every: float,
    health: tuple[str, str, int] | None = None,
    checks: Checks | None = None,
    guard: ConnectionGuard | None = None,
) -> int:
    """Run a FastStream service while its consumers keep the contract. They are checked
    before the subscribers bind (a drifted consumer never starts the service, and is never
    re-created by the client library with the wrong settings) and every `every` seconds.
    `health` (service, host, port) serves /livez, /readyz and /metrics from before NATS is
    reached: ready once connected, the subscribers bound and `checks` pass, until shutdown.
    `guard` (the one the broker's callbacks report to) stops the service when its connection
    is closed for good. The exit code: 0 after a normal stop, EXIT_DRIFT when a consumer
    drifted, EXIT_NATS_LOST when NATS refused the credentials or reconnecting gave up."""
    bound = False
    watch = ConsumerWatch(names, every=every, stop=app.exit)

    def ready() -> dict[str, bool]:
        own = {"nats": _connected(broker), "consumers": bound and watch.failure is None}
        return own | dict(checks() if checks else {})

    server = None
    if health is not None:
        service, host, port = health
        server = HealthServer(service, host=host, port=port, checks=ready)
    if server is not None:
        NATS_CONNECTED.labels(server.service).set_function(lambda: float(_connected(broker)))
        await server.start()
    try:
        try:
            await broker.connect()
        except NatsRefused as exc:
            log.error("nats.connection_closed", reason=str(exc), action="exiting")
            return EXIT_NATS_LOST
        if guard is not None:
            guard.attach(broker.connection)
            guard.stop = app.exit

            async def closing() -> None:
                guard.closing_now()

            app.on_shutdown(closing)
        js = broker.connection.jetstream()
        if not await watch.check(js):
            if guard is not None:
                guard.closing_now()
            await broker.stop()
            return EXIT_DRIFT

        async def start_watch() -> None:
            nonlocal bound
            bound = True
            watch.start(js)

        async def unready() -> None:
            nonlocal bound
            bound = False  # draining: take no new work, say so before the work in hand ends

        app.after_startup(start_watch)
        app.on_shutdown(unready)
        app.on_shutdown(watch.close)
        try:
            await app.run()
        except NatsError:
            if guard is None or guard.lost is None:
                raise  # draining a connection already closed for good fails: that is known
        if guard is not None and guard.lost is not None:
            return EXIT_NATS_LOST
        return EXIT_DRIFT if watch.failure else 0
    finally:
        if server is not None:
            await server.close()
