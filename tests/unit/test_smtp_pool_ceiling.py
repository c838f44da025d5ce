"""The SMTP pool against a server that takes fewer connections at once than the pool's size
(smtp.SmtpPool's ceiling), on a real aiosmtpd: a refused new session is neither a failed
delivery nor the server down while the pool has others alive; the pool keeps to the sessions
the server accepted, sends wait for one of them (up to smtp_timeout), and it tries one more
after a quiet period. With no session alive a refusal is the server down, as before. The
count of live sessions stays right through refusals, drops and cancellations."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpdServer
from structlog.testing import capture_logs

from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError
from services.notifier.smtp import SmtpPool
from services.runtime.metrics import SMTP_UP
from tests.support import SmtpServer, eventually
from tests.unit.test_smtp_begun import FROM, TO, Envelopes, ready
from tests.unit.test_smtp_pool import email, pool_for

N = 3  # connections the server takes at once from the pool


class Limited(Envelopes):
    """Envelopes (PIPELINING, RCPT held on demand) taking at most `limit` connections at
    once. Past it, a new connection is refused as `how` says: "421" (the greeting, as
    Postfix's smtpd_client_connection_count_limit does), "close" (closed at once), "ehlo"
    (greeted, then 421 to EHLO and closed)."""

    def __init__(self, limit: int, how: str) -> None:
        super().__init__()
        self.limit, self.how = limit, how
        self.accepted = 0  # connections open and served now
        self.most = 0  # the most served at once
        self.refused = 0
        self.served: set[_LimitedSmtpd] = set()
        self.rset_reply = "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        return self.rset_reply


def drop_all(server: SmtpServer) -> None:
    """The server closes every session it serves (an idle timeout, a reload)."""
    handler = limits(server)
    assert server.controller is not None and server.controller.loop is not None

    def close() -> None:
        for session in list(handler.served):
            if session.transport is not None:
                session.transport.close()

    server.controller.loop.call_soon_threadsafe(close)


class _LimitedSmtpd(SmtpdServer):
    def connection_made(self, transport: Any) -> None:
        handler = self.event_handler
        assert isinstance(handler, Limited)
        self.served = handler.accepted < handler.limit
        if self.served:
            handler.accepted += 1
            handler.most = max(handler.most, handler.accepted)
            handler.served.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        handler = self.event_handler
        assert isinstance(handler, Limited)
        if self.served:
            handler.accepted -= 1
            handler.served.discard(self)
            self.served = False
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self.served:
            await super()._handle_client()
            return
        handler = self.event_handler
        assert isinstance(handler, Limited)
        handler.refused += 1
        if handler.how == "421":
            await self.push("421 4.7.0 Too many connections from your host")
        elif handler.how == "ehlo":
            await self.push("220 ready")
            await self._reader.readline()
            await self.push("421 4.7.0 Too many connections")
        assert self.transport is not None
        self.transport.close()


class _LimitedController(Controller):
    def factory(self) -> SmtpdServer:
        return _LimitedSmtpd(self.handler, **self.SMTP_kwargs)


def limited_server(limit: int, how: str = "421") -> SmtpServer:
    server = SmtpServer()
    server.handler = Limited(limit, how)
    server.controller = _LimitedController(server.handler, hostname="127.0.0.1", port=server.port)
    server.controller.start()
    return server


@pytest.fixture
def make_server() -> Iterator[Callable[..., SmtpServer]]:
    """`limited_server`, each stopped at the end."""
    servers: list[SmtpServer] = []

    def make(limit: int, how: str = "421") -> SmtpServer:
        servers.append(limited_server(limit, how))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(params=["421", "close", "ehlo"])
def capped(request: pytest.FixtureRequest, make_server: Callable[..., SmtpServer]) -> SmtpServer:
    """A server taking N connections at once, refusing the next each way a server does."""
    return make_server(N, request.param)


@pytest.fixture
def one(make_server: Callable[..., SmtpServer]) -> SmtpServer:
    return make_server(1)


def limits(server: SmtpServer) -> Limited:
    assert isinstance(server.handler, Limited)
    return server.handler


def pool_with(
    server: SmtpServer, *, size: int = 16, timeout: float = 5.0, quiet: float = 60.0
) -> SmtpPool:
    pool = pool_for(server, size=size)
    pool.settings = pool.settings.model_copy(update={"smtp_timeout": timeout})
    pool.ceiling_quiet_seconds = quiet
    return pool


async def burst(pool: SmtpPool, count: int, tag: str) -> list[str]:
    """`count` emails sent at once, each to its own recipient; their replies."""
    return await asyncio.gather(
        *(pool.send(email(to=f"{tag}-{i}@district.example")) for i in range(count))
    )


def smtp_up() -> float:
    return float(SMTP_UP._value.get())


async def no_drift(pool: SmtpPool, server: SmtpServer) -> None:
    """Nothing in use: every live session is idle (none lost, none counted twice), none is
    being opened, and the server serves exactly the idle sessions still connected."""
    assert pool._opening == 0 and not pool._waiters
    assert pool.live == len(pool._idle), (pool.live, len(pool._idle))
    assert pool._slots._value == pool.size
    await eventually(lambda: limits(server).accepted == sum(s.is_connected for s in pool._idle))


async def test_a_server_taking_n_connections_gets_every_email_once(capped: SmtpServer) -> None:
    handler = limits(capped)
    pool = pool_with(capped)
    try:
        with capture_logs() as logs:
            replies = await burst(pool, 3 * N, "first")
        assert all("OK" in r for r in replies)  # no TransientDeliveryError
        assert pool.ok and smtp_up() == 1.0
        assert pool.ceiling == N and pool.live == N and pool.connects == N
        assert handler.refused > 0 and handler.most == N
        lowered = [e for e in logs if e["event"] == "smtp.pool_ceiling_lowered"]
        assert len(lowered) == 1, lowered
        assert lowered[0]["ceiling"] == N
        assert lowered[0]["error"] in {
            "SMTPConnectResponseError",
            "SMTPConnectError",
            "SMTPServerDisconnected",
            "SMTPHeloError",
        }
        assert "district.example" not in repr(lowered[0]) and "127.0.0.1" not in repr(lowered[0])
        # At the ceiling, sends wait for a session: none tries another connection.
        refused = handler.refused
        assert all("OK" in r for r in await burst(pool, 3 * N, "second"))
        assert handler.refused == refused and pool.connects == N
        await no_drift(pool, capped)
    finally:
        await pool.close()
    rcpts = sorted(r.rcpt[0] for r in capped.received)
    expected = [f"{tag}-{i}@district.example" for tag in ("first", "second") for i in range(3 * N)]
    assert rcpts == sorted(expected)  # each once
    assert pool.live == 0


async def test_the_ceiling_rises_after_a_quiet_period(
    make_server: Callable[..., SmtpServer],
) -> None:
    server = make_server(N)
    handler = limits(server)
    pool = pool_with(server, quiet=0.4)
    try:
        await burst(pool, 3 * N, "a")
        assert pool.ceiling == N
        # The refusal was transient: the server takes more now.
        handler.limit = 16
        await asyncio.sleep(0.9)  # two quiet periods
        with capture_logs() as logs:
            await burst(pool, 3 * N, "b")
        assert pool.ceiling >= N + 2 and pool.live >= N + 2
        assert any(e["event"] == "smtp.pool_ceiling_raised" for e in logs)
        # A server still taking that many: each quiet period, one more try, refused, and the
        # ceiling back where it was.
        handler.limit = pool.live
        refused = handler.refused
        await asyncio.sleep(0.5)
        assert all("OK" in r for r in await burst(pool, 3 * handler.limit, "c"))
        assert handler.refused - refused in (1, 2)  # a burst may span another period
        assert pool.ok and pool.ceiling == handler.limit
        await no_drift(pool, server)
    finally:
        await pool.close()
    assert len(server.received) == 3 * N * 2 + 3 * handler.limit


async def test_it_never_goes_above_size_nor_rises_without_a_quiet_period(
    capped: SmtpServer,
) -> None:
    handler = limits(capped)
    pool = pool_with(capped, size=N + 1)
    try:
        await burst(pool, 3 * N, "a")
        assert pool.ceiling == N
        handler.limit = 16
        await burst(pool, 3 * N, "b")
        assert pool.ceiling == N and pool.connects == N  # a minute has not passed
        pool.ceiling_quiet_seconds = 0.0001
        await asyncio.sleep(0.01)
        await burst(pool, 3 * N, "c")
        assert pool.ceiling == pool.size == N + 1 and pool.live <= pool.size
    finally:
        await pool.close()
    assert len(capped.received) == 9 * N


@pytest.mark.parametrize("how", ["close", "421"])
async def test_with_no_session_alive_a_refusal_is_the_server_down(
    how: str, make_server: Callable[..., SmtpServer]
) -> None:
    server = make_server(0, how)
    pool = pool_with(server, timeout=30.0)
    try:
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError):
            await pool.send(email())
        if how == "close":
            assert not pool.ok and smtp_up() == 0.0  # as ever: SMTP down
        # Several at once, none alive: each fails as it always has, without waiting for
        # smtp_timeout (30 s here).
        results = await asyncio.gather(
            *(pool.send(email()) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, TransientDeliveryError) for r in results), results
        assert time.monotonic() - started < 10
        assert pool.ceiling == pool.size and pool.live == 0
        # Back: the send says SMTP is up.
        limits(server).limit = 16
        assert "OK" in await pool.send(email())
        assert pool.ok and smtp_up() == 1.0
        await no_drift(pool, server)
    finally:
        await pool.close()


async def test_a_refusal_after_every_session_dropped_is_the_server_down(
    one: SmtpServer,
) -> None:
    pool = pool_with(one)
    try:
        await burst(pool, 2, "warm")
        assert pool.live == 1
        one.stop()  # the session dropped, and nothing listens
        with pytest.raises(TransientDeliveryError):
            await pool.send(email())
        assert not pool.ok and pool.live == 0
    finally:
        await pool.close()


async def test_waiting_past_smtp_timeout_raises_transient(one: SmtpServer) -> None:
    pool = pool_with(one, timeout=0.5)
    try:
        assert "OK" in await pool.send(email())
        begun = pool.begin(FROM, TO)  # holds the one session the server takes, for its body
        assert begun is not None and await ready(begun) is not None
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError, match=r"no SMTP session free within 0\.5 s"):
            await pool.send(email(to="chief@district.example"))
        waited = time.monotonic() - started
        assert 0.5 <= waited < 3
        assert pool.ok and smtp_up() == 1.0  # not the server down
        assert pool.ceiling == 1 and pool.live == 1
        assert "OK" in await pool.send(email(), begun)  # the held one goes
        assert "OK" in await pool.send(email(to="chief@district.example"))
        await no_drift(pool, one)
    finally:
        await pool.close()
    assert [r.rcpt for r in one.received] == [[TO], [TO], ["chief@district.example"]]


async def test_begin_respects_the_ceiling_and_the_waiting_sends(one: SmtpServer) -> None:
    handler = limits(one)
    pool = pool_with(one)
    try:
        assert "OK" in await pool.send(email())
        begun = pool.begin(FROM, TO)
        assert begun is not None and await ready(begun) is not None
        waiting = asyncio.ensure_future(pool.send(email(to="chief@district.example")))
        await eventually(lambda: pool._waiters)  # refused, lowered, waiting
        assert pool.ceiling == 1
        connects, refused = pool.connects, handler.refused
        assert pool.begin(FROM, TO) is None  # opens nothing
        assert pool.connects == connects and handler.refused == refused
        # The held session, once released, goes to the waiting send, not to a new begin.
        sending = asyncio.ensure_future(pool.send(email(), begun))
        await asyncio.sleep(0)
        assert pool.begin(FROM, TO) is None
        assert "OK" in await sending and "OK" in await waiting
        again = pool.begin(FROM, TO)  # idle again: begun as ever
        assert again is not None
        assert "OK" in await pool.send(email(), again)
        await no_drift(pool, one)
    finally:
        await pool.close()
    assert pool.connects == 1
    assert len(one.received) == 4


async def test_the_probe_neither_opens_past_the_ceiling_nor_reports_a_refusal(
    one: SmtpServer,
) -> None:
    handler = limits(one)
    pool = pool_with(one)
    try:
        assert await pool.probe()
        begun = pool.begin(FROM, TO)
        assert begun is not None and await ready(begun) is not None
        # The one session busy: the probe tries another, refused; that is not SMTP down.
        assert await pool.probe() and pool.ok
        assert handler.refused == 1 and pool.ceiling == 1
        assert await pool.probe() and handler.refused == 1  # at the ceiling: skipped
        pool.ceiling = 2  # as after a quiet period
        assert await pool.probe() and pool.ok
        assert handler.refused == 2 and pool.ceiling == 1
        begun.drop()
        await asyncio.wait({begun._task})
        await no_drift(pool, one)
    finally:
        await pool.close()


async def test_a_session_handed_over_as_its_waiter_is_cancelled_goes_to_the_next(
    one: SmtpServer,
) -> None:
    pool = pool_with(one)
    try:
        assert "OK" in await pool.send(email())
        held, reused = await pool._acquire()  # a send in progress
        assert reused and pool.live == 1
        first = asyncio.ensure_future(pool.send(email(to="first@district.example")))
        await eventually(lambda: len(pool._waiters) == 1)
        second = asyncio.ensure_future(pool.send(email(to="second@district.example")))
        await eventually(lambda: len(pool._waiters) == 2)
        pool._release(held)  # handed to the first waiter...
        first.cancel()  # ...cancelled before it resumes: the session goes to the second
        assert "OK" in await second
        assert first.cancelled()
        await no_drift(pool, one)
        assert pool.live == 1 and pool.connects == 1
    finally:
        await pool.close()
    assert [r.rcpt for r in one.received] == [[TO], ["second@district.example"]]


async def test_no_drift_after_refusals_drops_and_cancellations(capped: SmtpServer) -> None:
    handler = limits(capped)
    pool = pool_with(capped, size=8, quiet=0.05)
    delivered = 0
    try:
        for round_ in range(6):
            # A burst past the ceiling (refusals, then waits), as the quiet period lets it
            # try one more each round.
            delivered += len(await burst(pool, 3 * N, f"r{round_}"))
            assert pool.ok
            await no_drift(pool, capped)
            assert pool.live <= N

            # Cancelled while opening, while waiting and mid-transaction.
            held = threading.Event()
            handler.hold_rcpt = held
            sends = [
                asyncio.ensure_future(pool.send(email(to=f"c{round_}-{i}@district.example")))
                for i in range(2 * N)
            ]
            await asyncio.sleep(0.02 * (round_ % 3))
            for task in sends[::2]:
                task.cancel()
            held.set()
            results = await asyncio.gather(*sends, return_exceptions=True)
            assert all(isinstance(r, str | asyncio.CancelledError) for r in results), results
            delivered += sum(isinstance(r, str) for r in results)
            await no_drift(pool, capped)

            # The server drops a session after the body (the send fails, the session is gone)
            # and, every other round, every session at once (a restart).
            handler.drop_after_data = True
            with pytest.raises(TransientDeliveryError):
                await pool.send(email(to=f"d{round_}@district.example"))
            handler.drop_after_data = False
            delivered += 1  # the server had it (the notifier would retry)
            await no_drift(pool, capped)

            # A refusal, and the server closes the session at the RSET after it: the send
            # gives back a session that is no longer alive.
            handler.refuse, handler.rset_reply = {"RCPT": "550 5.1.1 no such user"}, "421 bye"
            with pytest.raises(PermanentDeliveryError):
                await pool.send(email(to=f"e{round_}@district.example"))
            handler.refuse, handler.rset_reply = {}, "250 OK"
            await no_drift(pool, capped)

            # Transactions begun and ended: dropped once ready, or taken by another envelope
            # (either closes its session, which the server then discards).
            assert "OK" in await pool.send(email(to=f"w{round_}@district.example"))  # one idle
            delivered += 1
            dropped = pool.begin(FROM, TO)
            assert dropped is not None and await ready(dropped) is not None
            dropped.drop()
            other = pool.begin(FROM, TO)
            if other is not None:
                await pool.send(email(to=f"o{round_}@district.example"), other)
                delivered += 1
            await no_drift(pool, capped)
            if round_ % 2:
                drop_all(capped)
                await eventually(lambda: handler.accepted == 0)
                delivered += len(await burst(pool, 2 * N, f"after{round_}"))
                assert pool.ok
                await no_drift(pool, capped)
    finally:
        await pool.close()
    assert pool.live == 0 and pool._opening == 0
    await eventually(lambda: handler.accepted == 0)
    assert handler.most <= N
    assert len(capped.received) == delivered
    rcpts = [r.rcpt[0] for r in capped.received]
    assert len(rcpts) == len(set(rcpts))  # none twice
