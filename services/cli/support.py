"""What the commands share: settings with logging, a clean failing exit, the district config,
and one round trip to NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from services.runtime.config import ConfigError
from services.runtime.logging import configure_logging
from services.runtime.settings import Settings

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from services.domain.directory import Directory
    from services.router.rules import Rules

T = TypeVar("T")


def load_settings() -> Settings:
    """The process settings from `DOORALERT_*`, with logging configured from them; exit 2 if
    DOORALERT_NATS_URL is unusable (e.g. its servers carry different credentials)."""
    from services.eventlog.connection import NatsUrlError, parse_nats_url

    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    try:
        parse_nats_url(settings.nats_url)
    except NatsUrlError as exc:
        fail(str(exc))
    return settings


def shown_url(settings: Settings) -> str:
    """DOORALERT_NATS_URL for a message: any password replaced by `***`."""
    from services.eventlog.connection import redact_url

    return redact_url(settings.nats_url)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `dooralert: <message>` on stderr and exit with `code` (2: bad input or setup)."""
    typer.echo(f"dooralert: {message}", err=True)
    raise typer.Exit(code)


def require_secret_keys(settings: Settings) -> None:
    """Exit 2, saying how to make a key, unless the secret keys are fit to sign with."""
    from services.runtime.settings import InsecureSecretKey

    try:
        settings.signing_keys()
    except InsecureSecretKey as exc:
        fail(f"refusing to start: {exc}")


def service_directory(settings: Settings) -> Directory:
    """The district directory a service runs with; exit 2 if the config is unusable."""
    from services.domain.directory import load_directory

    try:
        return load_directory(settings.config_dir)
    except ConfigError as exc:
        fail(f"refusing to start: {exc}")


def service_rules(settings: Settings) -> Rules:
    """The routing and escalation rules a service runs with; exit 2 if they are unusable."""
    from services.router.rules import load_rules

    try:
        return load_rules(settings.config_dir)
    except ConfigError as exc:
        fail(f"refusing to start: {exc}")


def on_jetstream(
    settings: Settings,
    *,
    name: str,
    work: Callable[[JetStreamContext], Awaitable[T]],
    api_timeout: float | None = None,
) -> T:
    """Connect to NATS as `name`, run `work` on JetStream, and close the connection. Exit 2,
    saying why, when NATS refuses the credentials or cannot be reached within seconds (a
    command run by hand must not retry for ever). `api_timeout`: how long each JetStream API
    request may take (nats-py's default, 5 s, when None)."""
    from nats.errors import Error as NatsError

    from services.eventlog import NatsConnectError, connect, new_guard

    async def run() -> T:
        guard = new_guard(settings.nats_url, name)
        nc = await connect(settings.nats_url, name=name, guard=guard, one_shot=True)
        try:
            js = nc.jetstream() if api_timeout is None else nc.jetstream(timeout=api_timeout)
            return await work(js)
        except (NatsError, OSError, TimeoutError):
            if guard.lost is not None:
                raise NatsConnectError(guard.lost) from None
            raise
        finally:
            guard.closing_now()
            try:
                await nc.close()
            except (NatsError, OSError, RuntimeError):
                # Closing a lost connection may fail flushing what it held (uvloop: RuntimeError).
                if guard.lost is None:
                    raise

    try:
        return asyncio.run(run())
    except NatsConnectError as exc:
        fail(str(exc))


def operate(name: str, work: Callable[[JetStreamContext], Awaitable[str]]) -> None:
    """An operator command's one NATS round trip: print what `work` says it did; exit 2 with
    the reason on a missing incident (`LookupError`) or an unreachable server."""
    settings = load_settings()
    try:
        typer.echo(on_jetstream(settings, name=name, work=work))
    except LookupError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot reach NATS at {shown_url(settings)}: {exc}")
