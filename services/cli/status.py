"""`dooralert status`: the pipeline report intake's /healthz gives, from the command line.
Exit 0 when healthy, 1 when stalled (or a consumer cannot be read), 2 when NATS is
unreachable."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from services.cli.support import load_settings
from services.eventlog.pipeline import ConsumerHealth, PipelineHealth, PipelineMonitor, Thresholds
from services.runtime.settings import Settings

# Pull requests come and go; a few looks over this long tell "idle" from "nobody pulling".
SAMPLE_SECONDS = 2.5
SAMPLE_EVERY = 0.5


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _line(c: ConsumerHealth) -> str:
    if not c.present:
        state = "MISSING"
    elif c.paused_until:
        state = "PAUSED"
    else:
        state = {True: "consuming", False: "NOT CONSUMING", None: "idle?"}[c.consuming]
    return (
        f"  {c.name:<17} {c.stream:<17} {state:<14} pending {c.num_pending:<5} "
        f"unacked {c.num_ack_pending:<5} oldest waiting {_seconds(c.oldest_undelivered_seconds)}"
        f" / unacked {_seconds(c.oldest_unacked_seconds)}"
    )


def render(report: PipelineHealth) -> str:
    """The report for a terminal: one line per consumer, then each problem."""
    head = "pipeline: healthy" if report.healthy else "pipeline: STALLED"
    lines = [f"{head} (checked {report.checked_at:%Y-%m-%d %H:%M:%S}Z)"]
    lines += [_line(c) for c in report.consumers]
    lines += [f"problem: {p}" for p in report.problems]
    return "\n".join(lines)


async def check(settings: Settings) -> PipelineHealth:
    """Sample the pipeline for a moment (raises OSError-like errors when NATS is unreachable)."""
    from services.eventlog import connect, new_guard

    guard = new_guard(settings.nats_url, "dooralert-status")
    nc = await connect(settings.nats_url, name="dooralert-status", guard=guard, one_shot=True)
    try:
        limits = Thresholds(stall=settings.pipeline_stall_seconds, unacked=settings.unacked_limit())
        start = datetime.now(UTC)
        # No grace: "nobody pulling" is judged from these few looks alone.
        since = start - timedelta(seconds=limits.stall + 1)
        monitor = PipelineMonitor(nc.jetstream(), limits=limits, since=since)
        report = await monitor.refresh(datetime.now(UTC))
        while not report.healthy and datetime.now(UTC) - start < timedelta(seconds=SAMPLE_SECONDS):
            await asyncio.sleep(SAMPLE_EVERY)
            report = await monitor.refresh(datetime.now(UTC))
        return report
    finally:
        guard.closing_now()
        await nc.close()


def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Report the pipeline: each consumer's lag, oldest waiting message, and whether the router
    and notifier are consuming. Exit 0 healthy, 1 stalled, 2 NATS unreachable."""
    from services.eventlog import NatsConnectError

    settings = load_settings()
    try:
        report = asyncio.run(check(settings))
    except NatsConnectError as exc:  # refused credentials or no server: says which, no password
        typer.echo(f"dooralert: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - any failure to connect is "cannot tell"
        typer.echo(f"dooralert: cannot reach NATS: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))
    raise typer.Exit(0 if report.healthy else 1)
