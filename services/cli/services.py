"""The commands that run a process: each service, provisioning, and the local dev system."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.cli.support import (
    fail,
    load_settings,
    on_jetstream,
    require_secret_keys,
    service_directory,
    service_rules,
    shown_url,
)
from services.runtime import eventloop, memory
from services.runtime.config import ConfigError
from services.runtime.logging import configure_logging, get_logger
from services.runtime.settings import EXAMPLE_CONFIG_DIR, Settings

if TYPE_CHECKING:
    import uvicorn


class _DevSettings(BaseSettings):
    """The one setting `dev` reads from the environment; it sets the rest for its children."""

    model_config = Settings.model_config
    config_dir: Path = EXAMPLE_CONFIG_DIR


def dev_config_dir(option: Path | None) -> tuple[Path, str]:
    """The district config `dev` runs, and where that choice came from."""
    if option is not None:
        return option.resolve(), "--config-dir"
    try:
        from_env = _DevSettings().config_dir
    except ValidationError as exc:
        fail(f"DOORALERT_CONFIG_DIR: {exc.errors()[0]['msg']}")
    if from_env != EXAMPLE_CONFIG_DIR:
        return from_env.resolve(), "DOORALERT_CONFIG_DIR"
    return EXAMPLE_CONFIG_DIR.resolve(), "the example district"


def _check_config(config_dir: Path) -> None:
    # Refuse here, with the reason, rather than watch the services exit one by one.
    from services.domain.directory import load_directory
    from services.router.rules import load_rules

    try:
        load_directory(config_dir)
        load_rules(config_dir)
    except ConfigError as exc:
        fail(f"refusing to start: {exc}")


def dev(
    data_dir: Annotated[Path, typer.Option(help="where NATS data and the outbox live")] = Path(
        ".dooralert"
    ),
    http_port: Annotated[int, typer.Option(help="intake web port")] = 8080,
    smtp_port: Annotated[int, typer.Option(help="local SMTP outbox port")] = 8025,
    nats_port: Annotated[int, typer.Option(help="nats-server client port")] = 4222,
    config_dir: Annotated[
        Path | None,
        typer.Option(
            help="district config directory "
            "(default: DOORALERT_CONFIG_DIR, else the example district)"
        ),
    ] = None,
) -> None:
    """Run everything locally: NATS, SMTP outbox, intake, router, notifier, audit ledger."""
    from services.cli import dev as launcher

    configure_logging()
    district, source = dev_config_dir(config_dir)
    _check_config(district)
    typer.echo(f"dooralert dev: district config {district} (from {source})")
    code = launcher.run_dev(
        launcher.DevOptions(
            data_dir=data_dir.resolve(),
            http_port=http_port,
            smtp_port=smtp_port,
            nats_port=nats_port,
            config_dir=district,
        )
    )
    raise typer.Exit(code)


# Seconds each of provision's JetStream requests may take: creating a stream with three
# replicas on a cluster that has just formed can outlast nats-py's default 5 s.
PROVISION_API_TIMEOUT = 30.0


def provision(
    replicas: Annotated[int, typer.Option(help="stream replicas (3 in a cluster)")] = 1,
) -> None:
    """Create the streams, durable consumers and KV bucket (idempotent; never weakens)."""
    from services.eventlog import ProvisionError
    from services.eventlog import provision as do_provision

    settings = load_settings()
    work = partial(
        do_provision,
        replicas=replicas,
        session_ttl=settings.session_lifetime_seconds,
        notes_retention=settings.notes_retention_days * 86400.0,
    )
    try:
        lines = on_jetstream(
            settings, name="dooralert-provision", work=work, api_timeout=PROVISION_API_TIMEOUT
        )
        for line in lines:
            typer.echo(line)
    except ProvisionError as exc:
        fail(str(exc))
    except TimeoutError as exc:  # an OSError too: a server that is there but did not answer
        fail(
            f"NATS at {shown_url(settings)} did not answer a request within "
            f"{PROVISION_API_TIMEOUT:g} s ({exc}); a cluster that is still forming can be "
            "slow to place replicated streams. Provisioning is idempotent: run it again"
        )
    except OSError as exc:
        fail(f"cannot reach NATS at {shown_url(settings)}: {exc}")


def intake() -> None:
    """Run the intake web service: report form, API, staff incident pages, ack links."""
    import uvicorn

    from services.eventlog.connection import EXIT_NATS_LOST
    from services.intake.app import create_app

    settings = load_settings()
    require_secret_keys(settings)
    directory = service_directory(settings)
    if not settings.trusted_proxies and settings.base_url.startswith("https://"):
        # uvicorn serves plain http here, so an https URL means a proxy in front; without it
        # named, every request seems to come from the proxy and shares one address's limits.
        get_logger("dooralert.intake").warning(
            "intake.no_trusted_proxies",
            hint="set DOORALERT_TRUSTED_PROXIES to the reverse proxy's address",
        )
    app = create_app(settings, directory=directory)
    eventloop.install(settings.event_loop)
    memory.settle_heap()
    server = uvicorn.Server(intake_server_config(settings, app))
    app.state.stop_serving = lambda: setattr(server, "should_exit", True)
    try:
        server.run()
    finally:
        guard = getattr(app.state, "nats_guard", None)
        if guard is not None and guard.lost:
            # Lost for good (logged as nats.connection_closed), also when refused at startup
            # (uvicorn would exit 3): non-zero, so it is restarted.
            raise typer.Exit(EXIT_NATS_LOST)


def intake_server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """How uvicorn serves the intake app. X-Forwarded-For/-Proto are believed only from
    DOORALERT_TRUSTED_PROXIES; with none, the client address is the TCP peer."""
    import uvicorn

    from services.cli.http1 import intake_protocol

    # uvicorn's own default trusts 127.0.0.1 (or $FORWARDED_ALLOW_IPS): any local process or
    # sidecar could then name any client address and slip every per-address limit.
    trusted = settings.trusted_proxies
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        loop=eventloop.chosen(settings.event_loop),
        server_header=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "",
        # httptools (h11 where it is missing), a response of known length in one write, a
        # request head of at most 16 KiB (http1.py).
        http=intake_protocol(),
    )


def router() -> None:
    """Run the router: applies rules.yaml to reports and follow-ups, escalates missed acks."""
    from services.router.main import run

    settings = load_settings()
    directory = service_directory(settings)
    rules = service_rules(settings)
    eventloop.install(settings.event_loop)
    memory.settle_heap()
    raise typer.Exit(run(settings, rules=rules, directory=directory))


def notifier() -> None:
    """Run the notifier: email, webhook and Apprise (chat, SMS) delivery, retries, outcomes."""
    from services.notifier.main import run

    settings = load_settings()
    require_secret_keys(settings)
    directory = service_directory(settings)
    eventloop.install(settings.event_loop)
    memory.settle_heap()
    raise typer.Exit(run(settings, directory=directory))


def outbox(
    directory: Annotated[Path, typer.Option("--dir")],
    host: str = "127.0.0.1",
    port: int = 8025,
) -> None:
    """A development SMTP server that saves each message as an .eml file."""
    from services.cli.outbox import serve

    configure_logging()
    serve(directory, host=host, port=port)
