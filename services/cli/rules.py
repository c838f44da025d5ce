"""`dooralert rules`: validate a rules file, and explain what it does with one report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.support import fail
from services.runtime.config import ConfigError

if TYPE_CHECKING:
    from schemas.events import EscalationDecidedData
    from services.domain.directory import Directory
    from services.router.rules import Rules

app = typer.Typer(
    no_args_is_help=True,
    help="Check the routing and escalation rules, or explain them for one report.",
)


def _rules_and_directory(file: Path, district: Path | None) -> tuple[Rules, Directory | None]:
    # The district defaults to the rules file's directory; without one, checks that need
    # contacts are skipped.
    from services.domain.directory import load_directory
    from services.router.rules import load_rules

    rules = load_rules(file)
    base = district or (file.parent if file.is_file() else file)
    if district is not None and district.is_file():
        base = district.parent
    directory = load_directory(base) if (base / "district.yaml").exists() else None
    return rules, directory


@app.command("check")
def rules_check(
    file: Annotated[Path, typer.Argument(help="rules.yaml")],
    district: Annotated[
        Path | None,
        typer.Option(help="district.yaml (or its directory); default: beside the rules file"),
    ] = None,
) -> None:
    """Validate a rules file in full; exit non-zero with precise errors."""
    try:
        rules, directory = _rules_and_directory(file, district)
    except ConfigError as exc:
        fail(str(exc), 1)
    warnings = list(rules.warnings())
    if directory is not None:
        roles = {r for route in rules.routes for r in route.notify}
        for role in sorted(roles):
            if not any(directory.contacts_for(role, s.id) for s in directory.schools):
                warnings.append(f'role "{role}" has no contact in district.yaml')
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"{file}: ok, {len(rules.routes)} routes, {len(rules.escalation.tiers)} "
        f"escalation tiers, {len(rules.patterns)} patterns"
    )


def _decide(
    report_file: Path, *, rules: Rules, directory: Directory, now: datetime
) -> EscalationDecidedData:
    # The router's own decision for the report, computed here and sent nowhere.
    from schemas.events import EscalationDecided
    from services.intake.reports import ReportInvalid, encounter_event, parse_report
    from services.router.decide import decide

    try:
        report = parse_report(json.loads(report_file.read_text()), now=now)
    except (OSError, ValueError) as exc:
        fail(f"{report_file}: {exc}", 1)
    except ReportInvalid as exc:
        fail(f"{report_file}: invalid report: {exc}", 1)
    event = encounter_event(report, incident_id="explain", actor="cli", now=now)
    events = decide(event, rules=rules, directory=directory, now=now)
    return next(e.data for e in events if isinstance(e, EscalationDecided))


@app.command("explain")
def rules_explain(
    file: Annotated[Path, typer.Argument(help="rules.yaml")],
    report_file: Annotated[Path, typer.Option("--report", help="a report as JSON")],
    district: Annotated[Path | None, typer.Option(help="district.yaml or its directory")] = None,
) -> None:
    """Show which routes match a report and who would be told. Sends nothing."""
    try:
        rules, directory = _rules_and_directory(file, district)
    except ConfigError as exc:
        fail(str(exc), 1)
    if directory is None:
        fail("no district.yaml beside the rules file; pass --district", 1)
    now = datetime.now(UTC)
    decided = _decide(report_file, rules=rules, directory=directory, now=now)
    matched = ", ".join(decided.routes) or "(none: law and safety are told as a safety net)"
    typer.echo(f"routes:      {matched}")
    typer.echo(f"severity:    {decided.severity}")
    typer.echo(f"notify:      {', '.join(decided.notify_roles)}")
    if decided.require_ack:
        wait = (decided.ack_deadline - now).total_seconds() if decided.ack_deadline else 0
        typer.echo(f"must ack:    {', '.join(decided.require_ack)} within {wait:.0f}s")
    for r in decided.recipients:
        contact = directory.contact(r.contact_id)
        typer.echo(
            f"  {r.role:<15} {r.contact_id:<20} {contact.name if contact else '?':<36} {r.channel}"
        )
    if decided.unresolved_roles:
        typer.echo(f"nobody to tell for: {', '.join(decided.unresolved_roles)}")
