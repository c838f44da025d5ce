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
    """The process settings from `DOORALERT_*`, with logging configured from them."""
    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


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
    settings: Settings, *, name: str, work: Callable[[JetStreamContext], Awaitable[T]]
) -> T:
    """Connect to NATS as `name`, run `work` on JetStream, and close the connection."""
    from services.eventlog import connect

    async def run() -> T:
        nc = await connect(settings.nats_url, name=name)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())
