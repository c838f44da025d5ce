"""The `dooralert` command line. Each service is one process, configured by environment."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from services.runtime.config import ConfigError
from services.runtime.logging import configure_logging, get_logger
from services.runtime.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
audit_app = typer.Typer(no_args_is_help=True, help="Replay the event log.")
rules_app = typer.Typer(no_args_is_help=True, help="Check escalation rules.")
keys_app = typer.Typer(no_args_is_help=True, help="Make keys.")
app.add_typer(audit_app, name="audit")
app.add_typer(rules_app, name="rules")
app.add_typer(keys_app, name="keys")
log = get_logger("dooralert.cli")


def _settings() -> Settings:
    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"dooralert: {message}", err=True)
    raise typer.Exit(code)


def _load(settings: Settings, *, rules: bool = False):  # type: ignore[no-untyped-def]
    from services.domain.directory import load_directory
    from services.router.rules import load_rules

    try:
        directory = load_directory(settings.config_dir)
        return (directory, load_rules(settings.config_dir)) if rules else (directory, None)
    except ConfigError as exc:
        _fail(f"refusing to start: {exc}")
        raise  # unreachable


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="where NATS data and the outbox live")] = Path(
        ".dooralert"
    ),
    http_port: Annotated[int, typer.Option(help="intake web port")] = 8080,
    smtp_port: Annotated[int, typer.Option(help="local SMTP outbox port")] = 8025,
    nats_port: Annotated[int, typer.Option(help="nats-server client port")] = 4222,
    config_dir: Annotated[Path | None, typer.Option(help="district config")] = None,
) -> None:
    """Run the whole system locally: NATS, SMTP outbox, intake, router, notifier."""
    from services.cli.dev import DevOptions, run_dev
    from services.runtime.settings import EXAMPLE_CONFIG_DIR

    configure_logging()
    code = run_dev(
        DevOptions(
            data_dir=data_dir.resolve(),
            http_port=http_port,
            smtp_port=smtp_port,
            nats_port=nats_port,
            config_dir=(config_dir or EXAMPLE_CONFIG_DIR).resolve(),
        )
    )
    raise typer.Exit(code)


@app.command()
def provision(
    replicas: Annotated[int, typer.Option(help="stream replicas (3 in a cluster)")] = 1,
) -> None:
    """Create the streams, durable consumers and KV bucket (idempotent; never weakens)."""
    from services.eventlog import ProvisionError, connect
    from services.eventlog import provision as do_provision

    settings = _settings()

    async def run() -> list[str]:
        nc = await connect(settings.nats_url, name="dooralert-provision")
        try:
            return await do_provision(nc.jetstream(), replicas=replicas)
        finally:
            await nc.close()

    try:
        for line in asyncio.run(run()):
            typer.echo(line)
    except ProvisionError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot reach NATS at {settings.nats_url}: {exc}")


@app.command()
def intake() -> None:
    """Run the intake web service (form, API, status pages)."""
    import uvicorn

    from services.intake.app import create_app

    settings = _settings()
    directory, _ = _load(settings)
    uvicorn.run(
        create_app(settings, directory=directory),
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


@app.command()
def router() -> None:
    """Run the router: rules.yaml applied to each encounter report."""
    from services.router.main import build_app

    settings = _settings()
    directory, rules = _load(settings, rules=True)
    asyncio.run(build_app(settings, rules=rules, directory=directory).run())


@app.command()
def notifier() -> None:
    """Run the notifier: email delivery with retries and outcome events."""
    from services.notifier.main import build_app

    settings = _settings()
    directory, _ = _load(settings)
    asyncio.run(build_app(settings, directory=directory).run())


@app.command(hidden=True)
def outbox(
    directory: Annotated[Path, typer.Option("--dir")],
    host: str = "127.0.0.1",
    port: int = 8025,
) -> None:
    """A development SMTP server that saves each message as an .eml file."""
    from services.cli.outbox import serve

    configure_logging()
    serve(directory, host=host, port=port)


@audit_app.command("replay")
def audit_replay(
    incident: Annotated[str | None, typer.Option(help="one incident id")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="events and folded state as JSON")
    ] = False,
) -> None:
    """Rebuild each incident from the log and print its timeline."""
    from services.audit.replay import replay
    from services.eventlog import SUBJECT_PREFIX, connect, read_messages

    settings = _settings()

    async def run() -> tuple[str, int]:
        nc = await connect(settings.nats_url, name="dooralert-audit")
        try:
            subject = f"{SUBJECT_PREFIX}.*.{incident}.>" if incident else f"{SUBJECT_PREFIX}.>"
            messages = await read_messages(nc.jetstream(), subject)
        finally:
            await nc.close()
        return replay(messages, incident=incident, as_json=as_json)

    try:
        text, code = asyncio.run(run())
    except OSError as exc:
        _fail(f"cannot reach NATS at {settings.nats_url}: {exc}")
        return
    if text:
        typer.echo(text)
    raise typer.Exit(code)


@audit_app.command("report")
def audit_report(
    incident: Annotated[str, typer.Option(help="the incident id")],
    fmt: Annotated[str, typer.Option("--format", help="md (Markdown) or html (printable)")] = "md",
    key: Annotated[
        str | None,
        typer.Option(help="verifier key line or file: check the anchoring checkpoint's signature"),
    ] = None,
) -> None:
    """The after-action report for one incident: who was told, who acknowledged, when."""
    import re
    from datetime import UTC, datetime

    from schemas.report import TOKEN_PATTERN
    from services.audit.note import NoteError, load_verifier
    from services.audit.report import build_report, render_html, render_markdown
    from services.audit.source import read_checkpoint_notes
    from services.domain.directory import load_directory
    from services.eventlog import SUBJECT_PREFIX, connect, read_messages

    if fmt not in ("md", "html"):
        _fail(f"--format must be md or html, not {fmt!r}")
    if not re.fullmatch(TOKEN_PATTERN, incident):
        _fail(f"--incident {incident!r} is not an incident id (lowercase letters, digits, - _)")
    try:
        verifier = load_verifier(key) if key else None
    except (NoteError, OSError) as exc:
        _fail(f"--key: {exc}")
        return
    settings = _settings()
    try:
        directory = load_directory(settings.config_dir)
    except ConfigError as exc:
        _fail(f"cannot read contact names: {exc}")
        return

    async def run():  # type: ignore[no-untyped-def]
        nc = await connect(settings.nats_url, name="dooralert-report")
        try:
            js = nc.jetstream()
            messages = await read_messages(js, f"{SUBJECT_PREFIX}.*.{incident}.>")
            return messages, await read_checkpoint_notes(js)
        finally:
            await nc.close()

    try:
        messages, notes = asyncio.run(run())
    except OSError as exc:
        _fail(f"cannot reach NATS at {settings.nats_url}: {exc}")
        return
    pairs, unreadable = [], []
    for m in messages:
        try:
            pairs.append((m.seq, m.event()))
        except ValueError as exc:
            unreadable.append(f"seq {m.seq}: {str(exc)[:200]}")
    if not pairs:
        _fail(f"no events for incident {incident}", 1)
    school = directory.school(pairs[0][1].school_id)
    built = build_report(
        pairs,
        now=datetime.now(UTC),
        checkpoints=notes,
        verifier=verifier,
        contact_names={c.id: c.name for c in directory.contacts},
        school_name=school.name if school else None,
        problems=[f"unreadable message {u}" for u in unreadable],
    )
    typer.echo(render_html(built) if fmt == "html" else render_markdown(built), nl=False)


def _rules_and_directory(file: Path, district: Path | None):  # type: ignore[no-untyped-def]
    from services.domain.directory import load_directory
    from services.router.rules import load_rules

    rules = load_rules(file)
    base = district or (file.parent if file.is_file() else file)
    if district is not None and district.is_file():
        base = district.parent
    directory = load_directory(base) if (base / "district.yaml").exists() else None
    return rules, directory


@rules_app.command("check")
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
        _fail(str(exc), 1)
        return
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


@rules_app.command("explain")
def rules_explain(
    file: Annotated[Path, typer.Argument(help="rules.yaml")],
    report_file: Annotated[Path, typer.Option("--report", help="a report as JSON")],
    district: Annotated[Path | None, typer.Option(help="district.yaml or its directory")] = None,
) -> None:
    """Show which routes match a report and who would be told. Sends nothing."""
    import json as _json
    from datetime import UTC, datetime

    from services.intake.reports import ReportInvalid, encounter_event, parse_report
    from services.router.decide import decide

    try:
        rules, directory = _rules_and_directory(file, district)
    except ConfigError as exc:
        _fail(str(exc), 1)
        return
    if directory is None:
        _fail("no district.yaml beside the rules file; pass --district", 1)
        return
    now = datetime.now(UTC)
    try:
        report = parse_report(_json.loads(report_file.read_text()), now=now)
    except (OSError, ValueError) as exc:
        _fail(f"{report_file}: {exc}", 1)
        return
    except ReportInvalid as exc:
        _fail(f"{report_file}: invalid report: {exc}", 1)
        return
    event = encounter_event(report, incident_id="explain", actor="cli", now=now)
    decided = decide(event, rules=rules, directory=directory, now=now)[0].data  # type: ignore[attr-defined]
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


@keys_app.command("intake")
def keys_intake() -> None:
    """Make a new school intake key; store only the printed hash in district.yaml."""
    from services.domain.directory import generate_intake_key, hash_intake_key

    key = generate_intake_key()
    typer.echo(f"key (give to the school, shown once): {key}")
    typer.echo(f"hash (put under intake_key_hashes): {hash_intake_key(key)}")


# --- audit ledger: serve, export, verify; keys generate (DESIGN §6) ----------------------


def _log_origin(settings: Settings) -> str:
    if settings.log_origin:
        return settings.log_origin
    directory, _ = _load(settings)
    return f"dooralert.example/{directory.district.id}"


@audit_app.command("serve")
def audit_serve() -> None:
    """Run the audit ledger: Merkle tree over DOORALERT, signed checkpoints."""
    import signal

    from services.audit.ledger import Ledger, LedgerError
    from services.audit.note import NoteError, read_signing_key
    from services.eventlog import connect

    settings = _settings()
    if settings.log_key_file is None:
        _fail(
            "DOORALERT_LOG_KEY_FILE is not set; make a key with "
            "`dooralert keys generate --name NAME --out FILE`"
        )
        return
    try:
        signer = read_signing_key(settings.log_key_file)
    except (OSError, NoteError) as exc:
        _fail(f"cannot use signing key {settings.log_key_file}: {exc}")
        return
    origin = _log_origin(settings)

    async def run() -> None:
        nc = await connect(settings.nats_url, name="dooralert-ledger")
        # Only once connected: a signal before that ends the process the default way.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            ledger = Ledger(
                nc.jetstream(),
                signer,
                origin=origin,
                every=settings.checkpoint_every,
                seconds=settings.checkpoint_seconds,
                out_dir=settings.checkpoint_dir,
            )
            log.info("ledger.start", origin=origin, key=signer.verifier.line)
            await ledger.run(stop)
        finally:
            await nc.close()

    try:
        asyncio.run(run())
    except LedgerError as exc:
        _fail(str(exc), 1)
    except OSError as exc:
        _fail(f"cannot reach NATS at {settings.nats_url}: {exc}")


@audit_app.command("export")
def audit_export(
    out: Annotated[
        Path,
        typer.Option(help="directory to write events.jsonl, checkpoints.txt, log-key.pub into"),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            help="verifier key line or file for log-key.pub (default: from the last checkpoint)"
        ),
    ] = None,
) -> None:
    """Export the event log and its signed checkpoints for offline verification."""
    from services.audit.export import export
    from services.audit.note import NoteError, load_verifier
    from services.eventlog import connect

    settings = _settings()
    try:
        key_line = load_verifier(key).line if key else None
    except NoteError as exc:
        _fail(f"--key: {exc}")
        return

    bar = None

    def progress(done: int, total: int) -> None:
        # A progress bar on stderr for long exports (shown only on a terminal).
        nonlocal bar
        if bar is None:
            bar = typer.progressbar(length=total, label="exporting", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    async def run():  # type: ignore[no-untyped-def]
        nc = await connect(settings.nats_url, name="dooralert-export")
        try:
            return await export(nc.jetstream(), out, key_line=key_line, progress=progress)
        finally:
            await nc.close()
            if bar is not None:
                bar.__exit__(None, None, None)

    try:
        summary = asyncio.run(run())
    except OSError as exc:
        _fail(f"cannot export to {out} from {settings.nats_url}: {exc}")
        return
    typer.echo(f"{out}: {summary.events} events, {summary.checkpoints} checkpoints")
    if summary.key_line is None:
        typer.echo("warning: no verifier key known; log-key.pub not written (pass --key)", err=True)


@audit_app.command("verify")
def audit_verify(
    key: Annotated[str, typer.Option(help="the trusted verifier key line, or a file holding it")],
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export", help="verify this export directory offline (default: online from NATS)"
        ),
    ] = None,
    origin: Annotated[str | None, typer.Option(help="require this checkpoint origin")] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="extra checkpoint notes held outside the system (repeatable)"),
    ] = None,
) -> None:
    """Check the log against its signed checkpoints; exit 0 only if it is intact."""
    from services.audit.note import NoteError, load_verifier, split_notes
    from services.audit.verify import ExportFormatError, verify_export

    try:
        verifier = load_verifier(key)
        extra = [n for p in checkpoint or [] for n in split_notes(p.read_text(encoding="utf-8"))]
    except (NoteError, OSError) as exc:
        _fail(f"--key/--checkpoint: {exc}")
        return
    if export_dir is not None:
        try:
            result = verify_export(export_dir, verifier, origin=origin, extra_notes=extra)
        except (ExportFormatError, OSError) as exc:
            _fail(str(exc))
            return
    else:
        from services.audit.source import verify_stream
        from services.eventlog import connect

        settings = _settings()

        async def run():  # type: ignore[no-untyped-def]
            nc = await connect(settings.nats_url, name="dooralert-verify")
            try:
                return await verify_stream(
                    nc.jetstream(), verifier, origin=origin, extra_notes=extra
                )
            finally:
                await nc.close()

        try:
            result = asyncio.run(run())
        except OSError as exc:
            _fail(f"cannot reach NATS at {settings.nats_url}: {exc}")
            return
    typer.echo(result.render())
    raise typer.Exit(0 if result.ok else 1)


@keys_app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Option(help="key name, e.g. dooralert.example/<district id>")],
    out: Annotated[Path, typer.Option(help="signing-key file to create (mode 0600)")],
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
) -> None:
    """Make an Ed25519 checkpoint signing key; print the verifier key line to share."""
    from services.audit.note import NoteError, Signer, write_signing_key

    try:
        signer = Signer.generate(name)
        write_signing_key(out, signer, overwrite=force)
    except FileExistsError:
        _fail(
            f"{out} exists; pass --force to replace it (checkpoints signed with it stay "
            "verifiable only with its verifier key)"
        )
        return
    except (NoteError, OSError) as exc:
        _fail(str(exc))
        return
    typer.echo(signer.verifier.line)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
