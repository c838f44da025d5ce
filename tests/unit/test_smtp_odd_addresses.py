"""An address district.yaml accepts but the email package's parser fails on with something
other than ValueError (an AttributeError inside it): `SmtpPool.begin` leaves that email to
the usual send, as it does an address the parser refuses, instead of raising into the
handler before its attempt (which then only ended in a redelivery)."""

from __future__ import annotations

from services.domain.directory import EmailChannel
from tests.support import SmtpServer
from tests.unit.test_smtp_pool import email, pool_for

FROM = "dooralert@district.example"
ODD = "principal@[10.0.0.1"  # a closing bracket forgotten


async def test_begin_leaves_an_email_to_an_address_the_parser_chokes_on_to_send(
    smtp: SmtpServer,
) -> None:
    EmailChannel(type="email", address=ODD)  # district.yaml takes it
    pool = pool_for(smtp)
    try:
        assert "OK" in await pool.send(email())
        assert len(pool._idle) == 1  # an idle session: begin would use it
        assert pool.begin(FROM, ODD) is None
        assert len(pool._idle) == 1 and not pool._slots.locked()
    finally:
        await pool.close()
