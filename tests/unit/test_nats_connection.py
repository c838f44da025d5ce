"""DOORALERT_NATS_URL becomes client options in one place: servers without userinfo, the
credentials once (so a failover to any node carries them), never a password in a message."""

from __future__ import annotations

import pytest

from services.eventlog.connection import (
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
