"""An email's transaction begun before the email is made (smtp.Begun), on a real aiosmtpd: MAIL,
RCPT and DATA go out on an idle pooled session, `send` then writes only the body, and the
server gets the same envelope and bytes as from a send without it. A transaction not used
(dropped, another envelope, refused, its session gone) ends without a message, gives its slot
back, and leaves the email to the usual send, with the usual errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.notifier import smtp as smtp_module
from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError
from services.notifier.smtp import Begun, SmtpPool, _Session
from tests.support import SmtpServer, eventually
from tests.unit.test_email_lines import smtp_without_8bitmime  # noqa: F401 - a fixture
from tests.unit.test_smtp_pool import PipeliningHandler, Writes, email, pool_for

FROM = "dooralert@district.example"
TO = "law@district.example"


class Envelopes(PipeliningHandler):
    """PipeliningHandler (PIPELINING offered or not) that keeps each message's MAIL FROM,
    MAIL options and RCPT TO as the server took them, and can hold RCPT until released."""

    def __init__(self, *, pipelining: bool = True) -> None:
        super().__init__()
        self.pipelining = pipelining
        self.envelopes: list[tuple[str, list[str], list[str]]] = []
        self.mails = threading.Event()  # set at each MAIL
        self.hold_rcpt: threading.Event | None = None  # RCPT waits for it when set

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        if self.pipelining:
            return await super().handle_EHLO(server, session, envelope, hostname, responses)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mails.set()
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.hold_rcpt is not None:
            await asyncio.to_thread(self.hold_rcpt.wait, 10)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            kept = (envelope.mail_from, list(envelope.mail_options), list(envelope.rcpt_tos))
            self.envelopes.append(kept)
        return reply


def _server(handler: PipeliningHandler) -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = handler
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["one-at-a-time", "pipelining"])
def sink(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """The server without PIPELINING (a command per write) and with it."""
    yield from _server(Envelopes(pipelining=request.param == "pipelining"))


@pytest.fixture
def piped() -> Iterator[SmtpServer]:
    yield from _server(Envelopes())


def handler_of(server: SmtpServer) -> Envelopes:
    assert isinstance(server.handler, Envelopes)
    return server.handler


async def warm(pool: SmtpPool) -> None:
    """One email sent: the pool holds an idle session."""
    assert "OK" in await pool.send(email())
    assert len(pool._idle) == 1


async def ready(begun: Begun) -> _Session | None:
    """What `_begin` came to (a session waiting for the body, or None), once it has."""
    await asyncio.wait({begun._task})
    return begun._task.result()


def full(pool: SmtpPool) -> bool:
    return pool._slots._value == pool.size and not pool._slots.locked()


async def test_the_body_only_path_sends_what_a_send_without_it_sends(
    sink: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelining = handler_of(sink).pipelining
    pool = pool_for(sink)
    writes = Writes(monkeypatch)
    msg = email(body="naïve café\n.leading dot\nFrom the door\r\nlone\rcarriage")
    try:
        await warm(pool)
        before = writes.count
        begun = pool.begin(FROM, TO)
        assert begun is not None
        assert await ready(begun) is not None
        assert writes.count - before == (1 if pipelining else 3)  # MAIL, RCPT, DATA
        assert "OK" in await pool.send(msg, begun)
        assert writes.count - before == (2 if pipelining else 4)  # only the body was left
        assert pool.connects == 1  # on the pooled session
        assert full(pool) and len(pool._idle) == 1
        assert "OK" in await pool.send(msg)  # the same email without it
    finally:
        await pool.close()
    _, with_begun, without = sink.received
    assert with_begun.raw == without.raw
    assert with_begun.rcpt == without.rcpt == [TO]
    _, (mail_from, options, rcpts), (mail_from_2, options_2, rcpts_2) = handler_of(sink).envelopes
    assert (mail_from, rcpts) == (mail_from_2, rcpts_2) == (FROM, [TO])
    # No SIZE before the body is made; otherwise the same MAIL.
    assert options == ["BODY=8BITMIME"]
    assert [o for o in options_2 if not o.startswith("SIZE=")] == options


@pytest.fixture
def no_smtputf8() -> Iterator[SmtpServer]:
    """A server that does not offer SMTPUTF8 (aiosmtpd's Controller offers it by default)."""
    server = SmtpServer()
    server.handler = Envelopes()
    server.controller = Controller(
        server.handler, hostname="127.0.0.1", port=server.port, enable_SMTPUTF8=False
    )
    server.controller.start()
    yield server
    server.stop()


async def test_an_email_to_a_non_ascii_address_goes_on_the_body_only_path_with_smtputf8(
    piped: SmtpServer,
) -> None:
    server, handler = piped, handler_of(piped)
    pool = pool_for(server)
    to = "rené@exämple.example"
    try:
        await warm(pool)
        begun = pool.begin(FROM, to)
        assert begun is not None and begun.utf8
        assert await ready(begun) is not None
        assert "OK" in await pool.send(email(to=to, body="Où est la porte ?"), begun)
        assert "OK" in await pool.send(email(to=to, body="Où est la porte ?"))
    finally:
        await pool.close()
    assert pool.connects == 1
    _, with_begun, without = server.received
    assert with_begun.raw == without.raw and with_begun.rcpt == without.rcpt == [to]
    _, (_, options, _), (_, options_2, _) = handler.envelopes
    assert options == ["BODY=8BITMIME", "SMTPUTF8"]
    assert [o for o in options_2 if not o.startswith("SIZE=")] == options


async def test_a_non_ascii_address_without_smtputf8_fails_as_without_begun(
    no_smtputf8: SmtpServer,
) -> None:
    pool = pool_for(no_smtputf8)
    to = "rené@exämple.example"
    try:
        await warm(pool)
        begun = pool.begin(FROM, to)
        assert begun is not None
        assert await ready(begun) is None  # nothing asked of a server that cannot take it
        with pytest.raises(TransientDeliveryError, match="SMTPUTF8") as with_begun:
            await pool.send(email(to=to), begun)
        with pytest.raises(TransientDeliveryError, match="SMTPUTF8") as without:
            await pool.send(email(to=to))
        assert str(with_begun.value) == str(without.value)
        assert full(pool)
    finally:
        await pool.close()
    assert len(no_smtputf8.received) == 1  # the warm-up only


@pytest.mark.parametrize("when", ["before-it-ran", "mid-exchange", "after-it-finished"])
async def test_a_dropped_begun_sends_nothing_and_gives_its_slot_back(
    sink: SmtpServer, when: str
) -> None:
    handler = handler_of(sink)
    pool = pool_for(sink, size=1)
    try:
        await warm(pool)
        session = pool._idle[-1]
        handler.mails.clear()
        if when == "mid-exchange":
            handler.hold_rcpt = threading.Event()
        begun = pool.begin(FROM, TO)
        assert begun is not None
        if when == "mid-exchange":
            await asyncio.to_thread(handler.mails.wait, 10)  # MAIL answered, RCPT held
            assert not begun._task.done() and pool._slots.locked()
        elif when == "after-it-finished":
            assert await ready(begun) is session
        begun.drop()
        begun.drop()  # once only
        if handler.hold_rcpt is not None:
            handler.hold_rcpt.set()
        await asyncio.wait({begun._task})
        assert full(pool)  # given back, once
        if when == "before-it-ran":
            assert begun._task.cancelled() and not handler.mails.is_set()
            assert pool._idle == [session] and session.is_connected  # never taken: still idle
        else:
            assert not session.is_connected and pool._idle == []  # closed: the server discards
        # The slot is free: the next email goes at once.
        assert "OK" in await asyncio.wait_for(pool.send(email(to="chief@district.example")), 10)
    finally:
        await pool.close()
    assert [r.rcpt for r in sink.received] == [[TO], ["chief@district.example"]]
    assert pool.connects == (1 if when == "before-it-ran" else 2)


async def test_drop_after_the_send_took_it_changes_nothing(piped: SmtpServer) -> None:
    pool = pool_for(piped)
    try:
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        assert "OK" in await pool.send(email(), begun)
        session = pool._idle[-1]
        begun.drop()
        assert full(pool) and pool._idle == [session] and session.is_connected
        assert "OK" in await pool.send(email())
    finally:
        await pool.close()
    assert pool.connects == 1 and len(piped.received) == 3


async def test_another_envelope_ends_it_and_the_email_goes_once_to_its_recipient(
    sink: SmtpServer,
) -> None:
    pool = pool_for(sink)
    try:
        await warm(pool)
        begun = pool.begin(FROM, "someone-else@district.example")
        assert begun is not None
        session = await ready(begun)
        assert session is not None
        assert "OK" in await pool.send(email(to="chief@district.example"), begun)
        assert not session.is_connected  # ended: the server discarded it
        assert full(pool)
    finally:
        await pool.close()
    assert [r.rcpt for r in sink.received] == [[TO], ["chief@district.example"]]
    assert [rcpts for _, _, rcpts in handler_of(sink).envelopes] == [
        [TO],
        ["chief@district.example"],
    ]
    assert pool.connects == 2  # a fresh session, as when nothing was begun


async def test_an_envelope_that_cannot_be_read_gives_the_slot_back(
    piped: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever reading the email's envelope raises, `take` ends the transaction first; the
    # usual send then raises it, as it did without a begun transaction.
    pool = pool_for(piped)
    try:
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        session = await ready(begun)
        assert session is not None

        def unreadable(message: object) -> tuple[str, list[str]]:
            raise LookupError("unreadable headers")

        monkeypatch.setattr(smtp_module, "_envelope", unreadable)
        with pytest.raises(LookupError):
            await pool.send(email(), begun)
        assert full(pool) and not session.is_connected
    finally:
        await pool.close()
    assert len(piped.received) == 1


@pytest.mark.parametrize(
    ("command", "reply", "error"),
    [
        ("MAIL", "550 5.1.0 sender refused", PermanentDeliveryError),
        ("MAIL", "451 4.3.0 try later", TransientDeliveryError),
        ("MAIL", "421 4.7.0 closing", TransientDeliveryError),
        ("RCPT", "550 5.1.1 no such user", PermanentDeliveryError),
        ("RCPT", "452 4.2.2 mailbox full", TransientDeliveryError),
    ],
)
async def test_a_refusal_in_the_begun_phase_leaves_the_send_its_usual_error(
    sink: SmtpServer, command: str, reply: str, error: type[Exception]
) -> None:
    handler = handler_of(sink)
    pool = pool_for(sink)
    try:
        await warm(pool)
        handler.refuse = {command: reply}
        begun = pool.begin(FROM, TO)
        assert begun is not None
        assert await ready(begun) is None
        assert full(pool)
        assert await begun.take(email()) is None
        # The email itself, begun on an idle session again, then sent without it.
        handler.refuse = {}
        await warm(pool)
        handler.refuse = {command: reply}
        begun = pool.begin(FROM, TO)
        assert begun is not None
        with pytest.raises(error) as with_begun:
            await pool.send(email(), begun)
        with pytest.raises(error) as without:
            await pool.send(email())
        assert str(with_begun.value) == str(without.value)
        assert reply.split()[0] in str(with_begun.value)
        assert full(pool)
        handler.refuse = {}
        assert "OK" in await pool.send(email())
    finally:
        await pool.close()
    assert len(sink.received) == 3  # the warm-ups and the last


async def test_a_session_the_server_dropped_while_waiting_for_the_body_is_not_used(
    sink: SmtpServer,
) -> None:
    pool = pool_for(sink)
    try:
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        session = await ready(begun)
        assert session is not None
        sink.stop()  # closes the session waiting for the body
        sink.start()
        await eventually(lambda: not session.is_connected)  # seen while the reads run
        assert "OK" in await pool.send(email(), begun)
        assert full(pool)
    finally:
        await pool.close()
    assert [r.rcpt for r in sink.received] == [[TO], [TO]]  # sent once, on a new session
    assert pool.connects == 2


async def test_a_drop_not_yet_seen_when_the_body_goes_is_never_a_duplicate(
    sink: SmtpServer,
) -> None:
    # The server closes the session and the loop has not read that yet when the body is
    # written (stop() blocks this thread, the loop with it): the body met a closed session.
    # Whether that email went, or raised TransientDeliveryError (retried later), it is never
    # sent twice, and the slot comes back.
    pool = pool_for(sink)
    try:
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        assert await ready(begun) is not None
        sink.stop()
        sink.start()
        try:
            await pool.send(email(), begun)
            went = 1
        except TransientDeliveryError:
            went = 0
        assert full(pool)
        assert "OK" in await pool.send(email(to="chief@district.example"))
    finally:
        await pool.close()
    assert [r.rcpt for r in sink.received] == [[TO]] + [[TO]] * went + [["chief@district.example"]]


async def test_begin_is_none_without_an_idle_session(piped: SmtpServer) -> None:
    pool = pool_for(piped)
    try:
        assert pool.begin(FROM, TO) is None  # nothing open yet: `send` does it all
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        assert await ready(begun) is not None
        assert pool.begin(FROM, TO) is None  # the only session is taken
        begun.drop()
        await asyncio.wait({begun._task})
        assert pool.begin(FROM, "") is None  # no address: `send` refuses it as ever
    finally:
        await pool.close()


async def test_begin_is_none_while_every_slot_is_taken(piped: SmtpServer) -> None:
    pool = pool_for(piped, size=2)
    try:
        await asyncio.gather(pool.send(email()), pool.send(email()))
        assert len(pool._idle) == 2
        async with pool._slots, pool._slots:
            assert pool.begin(FROM, TO) is None
        # Taken between `begin` and its task: the task gives up, the email goes as usual.
        begun = pool.begin(FROM, TO)
        assert begun is not None
        async with pool._slots, pool._slots:
            assert await ready(begun) is None
        assert len(pool._idle) == 2 and full(pool)
        assert "OK" in await pool.send(email(), begun)
    finally:
        await pool.close()
    assert pool.connects == 2 and len(piped.received) == 3


async def test_begin_is_none_for_a_server_without_8bitmime(
    smtp_without_8bitmime: SmtpServer,  # noqa: F811 - the imported fixture
) -> None:
    pool = pool_for(smtp_without_8bitmime)
    try:
        await warm(pool)
        assert pool._idle[-1].wire is None  # aiosmtplib's send_message throughout
        assert pool.begin(FROM, TO) is None
    finally:
        await pool.close()


async def test_a_send_cancelled_while_its_begun_waits_ends_it(piped: SmtpServer) -> None:
    handler = handler_of(piped)
    pool = pool_for(piped, size=1)
    try:
        await warm(pool)
        session = pool._idle[-1]
        handler.mails.clear()
        handler.hold_rcpt = threading.Event()
        begun = pool.begin(FROM, TO)
        assert begun is not None
        sending = asyncio.ensure_future(pool.send(email(), begun))
        await asyncio.to_thread(handler.mails.wait, 10)
        sending.cancel()
        await asyncio.wait({sending})
        handler.hold_rcpt.set()
        assert sending.cancelled() and begun._task.cancelled()
        assert full(pool) and not session.is_connected and pool._idle == []
        handler.hold_rcpt = None
        assert "OK" in await asyncio.wait_for(pool.send(email()), 10)
    finally:
        await pool.close()
    assert len(piped.received) == 2


async def test_a_send_cancelled_just_as_its_begun_is_ready_gives_the_slot_back(
    piped: SmtpServer,
) -> None:
    # The begun task finishes, and the send waiting for it is cancelled before it resumes
    # (a graceful stop's cancel landing in that instant): the session it was handed is ended.
    pool = pool_for(piped, size=1)
    try:
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        sending: asyncio.Future[str] | None = None

        def cancel_the_send(_: object) -> None:  # runs before the send's own wake-up
            assert sending is not None
            sending.cancel()

        begun._task.add_done_callback(cancel_the_send)
        sending = asyncio.ensure_future(pool.send(email(), begun))
        await asyncio.wait({sending})
        assert sending.cancelled()
        session = begun._task.result()
        assert session is not None  # it was ready for the body
        assert full(pool)  # not kept by a send that never happened
        assert not session.is_connected and pool._idle == []
        assert "OK" in await asyncio.wait_for(pool.send(email()), 10)
    finally:
        await pool.close()
    assert len(piped.received) == 2


async def test_a_send_cancelled_while_writing_the_body_gives_the_slot_back(
    piped: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_for(piped, size=1)
    try:
        await warm(pool)
        begun = pool.begin(FROM, TO)
        assert begun is not None
        session = await ready(begun)
        assert session is not None and session.wire is not None
        body_written = asyncio.Event()
        wire_exchange = type(session.wire).exchange

        async def stalled(wire: Any, data: bytes, replies: int, timeout: float) -> Any:
            body_written.set()
            await asyncio.Event().wait()  # no answer comes

        monkeypatch.setattr(type(session.wire), "exchange", stalled)
        sending = asyncio.ensure_future(pool.send(email(), begun))
        await body_written.wait()
        sending.cancel()
        await asyncio.wait({sending})
        monkeypatch.setattr(type(session.wire), "exchange", wire_exchange)
        begun.drop()  # as the handler's finally does: nothing more
        assert full(pool) and not session.is_connected and pool._idle == []
        assert "OK" in await asyncio.wait_for(pool.send(email()), 10)
    finally:
        await pool.close()
    assert len(piped.received) == 2


async def test_no_slot_is_lost_over_many_begun_dropped_and_sent(sink: SmtpServer) -> None:
    handler = handler_of(sink)
    pool = pool_for(sink, size=2)
    sent = 0
    try:
        await warm(pool)
        for i in range(24):
            begun = pool.begin(FROM, TO)
            step = i % 6
            if step == 0:
                assert begun is not None
                begun.drop()  # before it ran
            elif step == 1:
                assert begun is not None
                await ready(begun)
                begun.drop()  # after it finished
            elif step == 2:
                await pool.send(email(), begun)  # the body only
                sent += 1
            elif step == 3:
                await pool.send(email(to="chief@district.example"), begun)  # another envelope
                sent += 1
            elif step == 4:
                handler.refuse = {"RCPT": "550 5.1.1 no such user"}
                with pytest.raises(PermanentDeliveryError):
                    await pool.send(email(), begun)
                handler.refuse = {}
            else:
                # Two at once: one begun, one plain, on the pool's two slots.
                other = pool.begin(FROM, TO)
                await asyncio.gather(pool.send(email(), begun), pool.send(email(), other))
                sent += 2
            if begun is not None:
                await asyncio.wait({begun._task})
            assert full(pool), f"step {step}"
            assert len(pool._idle) <= pool.size
            assert all(s.is_connected for s in pool._idle)
    finally:
        await pool.close()
    assert len(sink.received) == 1 + sent
