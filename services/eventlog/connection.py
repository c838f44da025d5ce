"""Connecting to NATS: DOORALERT_NATS_URL turned into client options (one place), and a guard
that makes a connection lost for good loud.

Credentials travel as options, never inside the server URLs: nats-py sends a URL's userinfo
only to that URL's server, so after a failover to a node the cluster advertised it connected
without them, was refused ("Authorization Violation"), and the service stayed up routing
nothing. As options, every server - given or discovered - gets the same credentials.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

from services.runtime.logging import get_logger

log = get_logger("dooralert.nats")
EXIT_NATS_LOST = 4  # the exit code of a service whose NATS connection was closed for good

# A service outlives server restarts and failovers: it reconnects for ever (by default).
SERVICE_RECONNECT = {"reconnect_time_wait": 0.5, "connect_timeout": 5}
# A command run by hand answers within seconds: a few tries per server, then it says why.
ONE_SHOT_ATTEMPTS = 2
ONE_SHOT_RECONNECT = {"reconnect_time_wait": 0.5, "connect_timeout": 3}


class NatsUrlError(ValueError):
    """DOORALERT_NATS_URL is unusable (no server, or servers with different credentials)."""


class NatsConnectError(Exception):
    """NATS could not be used; the message names the servers (never a password) and why."""


class NatsRefused(NatsConnectError):
    """The server refused the connection for a reason retrying does not cure."""


class CredentialsRefused(NatsRefused):
    """The server refused the user, password or token."""


class NatsUnreachable(NatsConnectError):
    """No server answered (or every one gave up) within the attempts allowed."""


def server_urls(url: str | Sequence[str]) -> list[str]:
    """The servers in a DOORALERT_NATS_URL: one URL, or several separated by commas (the
    nodes of a cluster; the client fails over between them and learns the rest from INFO)."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    urls = [u.strip() for u in parts if u.strip()]
    if not urls:
        raise NatsUrlError(f"no NATS server URL in {redact_url(url)!r}")
    return urls


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def redact_url(url: str | Sequence[str]) -> str:
    """The URL(s) for a message or a log line: a password or token replaced by `***`."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    shown = []
    for u in (p.strip() for p in parts if p.strip()):
        split = urlsplit(u if "://" in u else f"nats://{u}")
        user, at, host = split.netloc.rpartition("@")
        if at:
            name, colon, _ = user.partition(":")
            user = f"{name}:***" if colon else "***"  # a lone userinfo is a token
            shown.append(urlunsplit(split._replace(netloc=f"{user}@{host}")))
        else:
            shown.append(u)
    return ",".join(shown)


@dataclass(frozen=True)
class NatsTarget:
    """Where to connect and as whom: servers without userinfo, and the credentials once."""

    servers: list[str]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """The servers and user, safe for messages and logs."""
        who = f" as user {self.user!r}" if self.user else " with a token" if self.token else ""
        return ",".join(self.servers) + who


def parse_nats_url(url: str | Sequence[str]) -> NatsTarget:
    """Split DOORALERT_NATS_URL into servers and credentials (percent-decoded); every URL must
    carry the same credentials, or none is trusted to be the intended one."""
    urls = server_urls(url)
    creds: set[tuple[str | None, str | None, str | None]] = set()
    for u in urls:
        parts = urlsplit(u if "://" in u else f"nats://{u}")
        if parts.username is None:
            creds.add((None, None, None))
        elif parts.password is None:
            creds.add((None, None, unquote(parts.username)))  # nats://<token>@host
        else:
            creds.add((unquote(parts.username), unquote(parts.password), None))
    if len(creds) > 1:
        shown = ", ".join(redact_url(u) for u in urls)
        raise NatsUrlError(
            f"DOORALERT_NATS_URL: the servers carry different credentials ({shown}); "
            "give every server URL the same user and password"
        )
    ((user, password, token),) = creds
    servers = [_without_userinfo(u) for u in urls]
    return NatsTarget(servers=servers, user=user, password=password, token=token)


# Errors on which FastStream's NatsBroker error_cb re-raises (faststream 0.7.8,
# UNRECOVERABLE_CONNECT_ERRORS): raised inside nats-py's reconnect task, that ends the task and
# leaves the connection neither connected nor reconnecting, for ever. Treated as fatal by every
# service, so each one stops the same way.
_UNRECOVERABLE = frozenset(
    {
        "authorization violation",
        "authorization timeout",
        "invalid client protocol",
        "maximum payload violation",
        "invalid subject",
        "stale connection",
        "maximum connections exceeded",
        "parser error",
        "secure connection - tls required",
    }
)


def _refused(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, AuthorizationError) or "authorization violation" in text


def _unrecoverable(exc: BaseException) -> bool:
    return str(exc).removeprefix("nats: ").strip().strip("'").lower() in _UNRECOVERABLE


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if text.startswith("nats:") else f"{type(exc).__name__}: {text}"


class ConnectionGuard:
    """Watches one connection through nats-py's callbacks and decides when it is lost for
    good: the credentials refused (retrying cannot help, and FastStream's error_cb then kills
    nats-py's reconnect task, leaving a connection that never comes back), reconnecting failed
    `attempts` times per server (-1: never), or the client closed without our asking. A guard
    with `stop` (a service) then logs `nats.connection_closed` with the reason and calls
    `stop()`, so the process shuts down and exits non-zero for its supervisor to restart it.
    Call `closing_now()` before closing the connection ourselves: that close is no loss.
    A guard without `stop` (a command's connection) only keeps the reason in `lost`."""

    def __init__(self, name: str, *, target: str, attempts: int = -1) -> None:
        self.name, self.target, self.attempts = name, target, attempts
        self.closing = False
        self.lost: str | None = None
        self.last_error: str | None = None
        self.stop: Callable[[], None] | None = None
        self._client: Client | None = None
        self._failures = 0  # reconnect attempts failed in a row
        self._reported = False

    def attach(self, client: Client) -> None:
        """The connection, once made: from now on refused credentials stop the service
        (before, they abort the connect)."""
        self._client = client

    def closing_now(self) -> None:
        """We are about to close the connection: its close is no loss."""
        self.closing = True

    async def on_error(self, exc: Exception) -> None:
        """nats-py's error_cb."""
        text = _describe(exc)
        if text != self.last_error:  # one line per new error, not one per reconnect attempt
            log.warning("nats.error", connection=self.name, error=text)
        self.last_error = text
        if _refused(exc):
            self._give_up(f"NATS refused the credentials of {self.target} ({text})")
            return
        if _unrecoverable(exc):
            self._give_up(f"NATS refused the connection to {self.target} ({text})", NatsRefused)
            return
        client = self._client
        if client is None or not client.is_reconnecting or self.attempts < 0:
            return
        self._failures += 1
        if self._failures > max(1, self.attempts) * max(1, len(client.servers)):
            self._give_up(f"reconnecting to {self.target} gave up after {self._failures} attempts")

    def _give_up(self, reason: str, error: type[NatsRefused] = CredentialsRefused) -> None:
        if self.lost is None:
            self.lost = reason
        if self._client is None:
            # Raised out of nats-py's connect loop: a wrong password never becomes right.
            raise error(reason)
        # The service shuts down the way it always does (closing the connection itself);
        # nats-py never closes it under FastStream's pull loops, which spin on a closed one.
        self._stop_once()

    def _stop_once(self) -> None:
        if self.stop is None or self._reported:
            return
        self._reported = True
        log.error(
            "nats.connection_closed",
            connection=self.name,
            reason=self.lost,
            action="exiting so that the supervisor restarts the process",
        )
        self.stop()

    async def on_closed(self) -> None:
        """nats-py's closed_cb."""
        if self.closing and self.lost is None:
            return
        if self.lost is None:
            self.lost = f"the connection to {self.target} was closed ({self.last_error})"
        self._stop_once()

    async def on_reconnected(self) -> None:
        """nats-py's reconnected_cb."""
        log.info("nats.reconnected", connection=self.name)
        self.last_error, self._failures = None, 0

    def callbacks(self) -> dict[str, Any]:
        """The client options that report to this guard."""
        return {
            "error_cb": self.on_error,
            "closed_cb": self.on_closed,
            "reconnected_cb": self.on_reconnected,
        }

    def exit_if_stuck(self, after: float) -> None:
        """Backstop, from a thread: once the connection is lost (or closed without our
        asking) and the process has not ended within `after` seconds, log and exit with
        EXIT_NATS_LOST. A FastStream pull subscriber on a closed connection loops without
        ever yielding (faststream 0.7.8), starving the event loop that would shut it down."""

        def watch() -> None:
            since: float | None = None
            while True:
                time.sleep(0.5)
                client = self._client
                closed = client is not None and client.is_closed and not self.closing
                if self.lost is None and not closed:
                    since = None
                    continue
                since = since or time.monotonic()
                if time.monotonic() - since > after:
                    log.error(
                        "nats.exit_forced",
                        connection=self.name,
                        reason=self.lost or "connection closed",
                        waited_seconds=after,
                    )
                    sys.stderr.flush()
                    os._exit(EXIT_NATS_LOST)

        threading.Thread(target=watch, name=f"{self.name}-watchdog", daemon=True).start()


def connection_options(
    url: str | Sequence[str],
    *,
    name: str,
    guard: ConnectionGuard | None = None,
    one_shot: bool = False,
) -> dict[str, Any]:
    """`nats.connect` keyword arguments for DOORALERT_NATS_URL: the servers without userinfo,
    `user`/`password` or `token`, the guard's callbacks, and reconnect settings: a service's
    client reconnects for ever (its guard decides when to give up), a `one_shot` command's
    tries each server a few times."""
    target = parse_nats_url(url)
    options: dict[str, Any] = {"servers": target.servers, "name": name}
    if target.user is not None:
        # Replies come to `_INBOX.<user>.…`, the only inboxes that user may subscribe to
        # (deploy/nats/accounts.conf): no other service can read what this one is answered
        # (a notes key, a delivery record, an event).
        options |= {
            "user": target.user,
            "password": target.password,
            "inbox_prefix": inbox_prefix(target.user),
        }
    if target.token is not None:
        options["token"] = target.token
    if one_shot:
        options |= {"max_reconnect_attempts": ONE_SHOT_ATTEMPTS, **ONE_SHOT_RECONNECT}
    else:
        options |= {"max_reconnect_attempts": -1, **SERVICE_RECONNECT}
    if guard is not None:
        options |= guard.callbacks()
    return options


def inbox_prefix(user: str) -> str:
    """The inbox subjects of `user`'s connections: `_INBOX.<user>` (its replies, pull
    deliveries and watches all come there)."""
    return f"_INBOX.{user}"


def subscriber_inbox(url: str | Sequence[str]) -> bytes:
    """The prefix of a FastStream subscriber's pull inbox for DOORALERT_NATS_URL's user (its
    subscribers otherwise take nats-py's `_INBOX.`, which that user may not subscribe to)."""
    user = parse_nats_url(url).user
    return f"{inbox_prefix(user) if user is not None else '_INBOX'}.".encode()


def broker_options(
    url: str | Sequence[str], *, name: str, guard: ConnectionGuard | None = None
) -> dict[str, Any]:
    """The same options for FastStream's `NatsBroker(**...)` (credentials as its `security`)."""
    from faststream.nats import NatsToken, NatsUserPassword

    options = connection_options(url, name=name, guard=guard)
    user, password, token = (options.pop(k, None) for k in ("user", "password", "token"))
    if user is not None:
        options["security"] = NatsUserPassword(user, password or "")
    elif token is not None:
        options["security"] = NatsToken(token)
    return options


def new_guard(url: str | Sequence[str], name: str, *, attempts: int = -1) -> ConnectionGuard:
    """A guard for a connection to DOORALERT_NATS_URL named `name` that gives up after
    `attempts` failed reconnects per server (-1: never; DOORALERT_NATS_RECONNECT_ATTEMPTS)."""
    return ConnectionGuard(name, target=parse_nats_url(url).describe(), attempts=attempts)


async def connect(
    url: str | Sequence[str],
    *,
    name: str,
    guard: ConnectionGuard | None = None,
    one_shot: bool = False,
) -> Client:
    """A NATS connection to DOORALERT_NATS_URL, watched by `guard` (a new one if None).

    Raises CredentialsRefused when the server refuses the credentials, and (`one_shot` only:
    a service waits for its server for ever) NatsUnreachable when no server answers.
    """
    guard = guard or new_guard(url, name)
    options = connection_options(url, name=name, guard=guard, one_shot=one_shot)
    try:
        client = await nats.connect(**options)
    except NatsConnectError:
        raise
    except (NatsError, OSError, TimeoutError) as exc:
        why = guard.last_error or _describe(exc)
        raise NatsUnreachable(f"cannot reach NATS at {guard.target}: {why}") from None
    guard.attach(client)
    return client
