"""DOORALERT_NATS_URL becomes client options in one place: servers without userinfo, the
credentials once (so a failover to any node carries them), never a password in a message."""

from __future__ import annotations

import pytest
from nats.errors import Error as NatsError

from services.eventlog.connection import (
    ConnectionGuard,
    CredentialsRefused,
    NatsUrlError,
    broker_options,
    connection_options,
    parse_nats_url,
    redact_url,
)


def test_credentials_leave_the_urls_and_go_to_every_server_as_options() -> None:
    opts = connection_options(
        "nats://router:s3cret@a:4222, nats://router:s3cret@b:4222", name="dooralert-router"
    )
    assert opts["servers"] == ["nats://a:4222", "nats://b:4222"]
    assert (opts["user"], opts["password"]) == ("router", "s3cret")
    assert "token" not in opts
    assert opts["max_reconnect_attempts"] == -1  # a service reconnects for ever by default


def test_a_percent_encoded_password_is_decoded() -> None:
    target = parse_nats_url("nats://ledger:p%40ss%3Aword@host:4222")
    assert (target.user, target.password) == ("ledger", "p@ss:word")


def test_a_lone_userinfo_is_a_token() -> None:
    opts = connection_options("nats://t0ken@host:4222", name="x")
    assert opts["token"] == "t0ken" and "user" not in opts


def test_servers_with_different_credentials_are_refused_without_showing_passwords() -> None:
    with pytest.raises(NatsUrlError) as err:
        parse_nats_url("nats://router:one@a:4222,nats://router:two@b:4222")
    assert "same user and password" in str(err.value)
    assert ":one@" not in str(err.value) and ":two@" not in str(err.value)
    with pytest.raises(NatsUrlError):
        parse_nats_url("nats://router:pw@a:4222,nats://b:4222")  # one server without any


def test_messages_show_urls_with_the_password_masked() -> None:
    shown = redact_url(["nats://router:s3cret@a:4222", "nats://t0ken@b:4222", "nats://c:4222"])
    assert shown == "nats://router:***@a:4222,nats://***@b:4222,nats://c:4222"
    assert parse_nats_url("nats://router:s3cret@a:4222").describe() == (
        "nats://a:4222 as user 'router'"
    )
    assert "s3cret" not in repr(parse_nats_url("nats://router:s3cret@a:4222"))


def test_commands_give_up_after_a_few_attempts_services_never_do_by_themselves() -> None:
    opts = connection_options("nats://a:4222", name="dooralert-audit", one_shot=True)
    assert 0 < opts["max_reconnect_attempts"] <= 3
    # A service's client never closes itself (its guard decides, then the service shuts down).
    assert connection_options("nats://a:4222", name="s")["max_reconnect_attempts"] == -1


def test_the_broker_gets_the_credentials_as_its_security() -> None:
    opts = broker_options("nats://notifier:pw@a:4222", name="dooralert-notifier")
    assert opts["servers"] == ["nats://a:4222"]
    assert "user" not in opts and "password" not in opts
    security = opts["security"]
    assert (security.username, security.password) == ("notifier", "pw")


class _Client:
    """What the guard reads of a nats-py client."""

    def __init__(self, *, reconnecting: bool = False, servers: int = 1) -> None:
        self.is_reconnecting, self.is_closed = reconnecting, False
        self.servers = [object()] * servers


def _guard(attempts: int = -1) -> tuple[ConnectionGuard, list[str]]:
    stops: list[str] = []
    guard = ConnectionGuard("dooralert-router", target="nats://a:4222 as user 'router'")
    guard.attempts = attempts
    guard.stop = lambda: stops.append(guard.lost or "")
    return guard, stops


async def test_refused_credentials_abort_the_first_connect() -> None:
    guard, stops = _guard()
    with pytest.raises(CredentialsRefused, match="refused the credentials of nats://a:4222"):
        await guard.on_error(NatsError("nats: 'Authorization Violation'"))
    assert stops == []


async def test_refused_credentials_later_stop_the_service_once() -> None:
    guard, stops = _guard()
    guard.attach(_Client(reconnecting=True))  # type: ignore[arg-type]  # the parts it reads
    await guard.on_error(NatsError("nats: 'Authorization Violation'"))
    await guard.on_error(NatsError("nats: 'Maximum Connections Exceeded'"))
    guard.closing_now()  # the service's shutdown closes the connection
    await guard.on_closed()
    assert len(stops) == 1 and "refused the credentials" in stops[0]


async def test_an_error_no_reconnect_survives_stops_the_service() -> None:
    guard, stops = _guard()
    guard.attach(_Client(reconnecting=True))  # type: ignore[arg-type]  # the parts it reads
    await guard.on_error(NatsError("nats: 'Maximum Connections Exceeded'"))
    assert stops and "refused the connection" in stops[0]


async def test_reconnecting_gives_up_after_the_attempts_per_server() -> None:
    guard, stops = _guard(attempts=2)
    guard.attach(_Client(reconnecting=True, servers=2))  # type: ignore[arg-type]  # the parts it reads
    for _ in range(4):
        await guard.on_error(ConnectionRefusedError(111, "Connect call failed"))
    assert stops == []
    await guard.on_error(ConnectionRefusedError(111, "Connect call failed"))
    assert stops and "gave up after 5 attempts" in stops[0]


async def test_a_reconnect_resets_the_count_and_for_ever_never_gives_up() -> None:
    guard, stops = _guard(attempts=1)
    guard.attach(_Client(reconnecting=True))  # type: ignore[arg-type]  # the parts it reads
    await guard.on_error(OSError("refused"))
    await guard.on_reconnected()
    await guard.on_error(OSError("refused"))
    assert stops == []
    forever, never = _guard()
    forever.attach(_Client(reconnecting=True))  # type: ignore[arg-type]  # the parts it reads
    for _ in range(100):
        await forever.on_error(OSError("refused"))
    assert never == []


async def test_our_own_close_is_no_loss_but_an_unasked_one_is() -> None:
    ours, stopped = _guard()
    ours.closing_now()
    await ours.on_closed()
    assert stopped == [] and ours.lost is None
    theirs, stops = _guard()
    await theirs.on_closed()
    assert stops and "was closed" in stops[0]
