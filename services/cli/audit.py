"""`dooralert audit`: replay the log, the after-action report, and the signed ledger (serve,
export, verify; DESIGN §6)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli import forget
from services.cli.support import (
    fail,
    load_settings,
    on_jetstream,
    service_directory,
    shown_url,
)
from services.runtime.config import ConfigError
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from schemas.events import Event
    from services.audit.note import Signer
    from services.audit.witness import WitnessTarget
    from services.domain.sealing import DataKey
    from services.eventlog import StoredMessage

app = typer.Typer(
    no_args_is_help=True,
    help="Audit the event log: replay, after-action reports, the signed ledger, export, verify.",
)
log = get_logger("dooralert.cli")
app.command("forget")(forget.audit_forget)


@app.command("replay")
def audit_replay(
    incident: Annotated[str | None, typer.Option(help="one incident id")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="events and folded state as JSON")
    ] = False,
) -> None:
    """Rebuild each incident from the log and print its timeline."""
    from services.audit.replay import replay
    from services.eventlog import SUBJECT_PREFIX

    settings = load_settings()
    subject = f"{SUBJECT_PREFIX}.*.{incident}.>" if incident else f"{SUBJECT_PREFIX}.>"
    try:
        messages, keys = on_jetstream(
            settings, name="dooralert-audit", work=partial(forget.replay_log, subject=subject)
        )
    except OSError as exc:
        fail(f"cannot reach NATS at {shown_url(settings)}: {exc}")
    text, code = replay(
        messages,
        incident=incident,
        as_json=as_json,
        notes_keys=keys if as_json else None,
        retention=timedelta(days=settings.notes_retention_days),
    )
    if text:
        typer.echo(text)
    raise typer.Exit(code)


async def _incident_log(
    js: JetStreamContext, incident: str
) -> tuple[list[StoredMessage], list[str], list[StoredMessage], DataKey | None]:
    """The incident's messages, every checkpoint note, every pattern alert (those live on
    the district pseudo-school's subjects; the report keeps the ones naming this incident),
    and the incident's notes key while it exists."""
    from services.audit.source import read_checkpoint_notes
    from services.cli.forget import read_notes_key
    from services.eventlog import SUBJECT_PREFIX, read_messages

    messages = await read_messages(js, f"{SUBJECT_PREFIX}.*.{incident}.>")
    patterns = await read_messages(js, f"{SUBJECT_PREFIX}.district.*.pattern.detected")
    key = await read_notes_key(js, incident)
    return messages, await read_checkpoint_notes(js), patterns, key


def _readable(messages: list[StoredMessage]) -> tuple[list[tuple[int, Event]], list[str]]:
    # An unreadable message is named in the report rather than failing it.
    pairs: list[tuple[int, Event]] = []
    unreadable: list[str] = []
    for m in messages:
        try:
            pairs.append((m.seq, m.event()))
        except ValueError as exc:
            unreadable.append(f"seq {m.seq}: {str(exc)[:200]}")
    return pairs, unreadable


@app.command("report")
def audit_report(
    incident: Annotated[str, typer.Option(help="the incident id")],
    fmt: Annotated[str, typer.Option("--format", help="md (Markdown) or html (printable)")] = "md",
    key: Annotated[
        str | None,
        typer.Option(help="verifier key line or file: check the anchoring checkpoint's signature"),
    ] = None,
) -> None:
    """The after-action report for one incident: who was told, who acknowledged, when."""
    from schemas.events import PatternDetected
    from schemas.report import TOKEN_PATTERN
    from services.audit.note import NoteError, load_verifier
    from services.audit.report import build_report, render_html, render_markdown
    from services.domain.directory import load_directory

    if fmt not in ("md", "html"):
        fail(f"--format must be md or html, not {fmt!r}")
    if not re.fullmatch(TOKEN_PATTERN, incident):
        fail(f"--incident {incident!r} is not an incident id (lowercase letters, digits, - _)")
    try:
        verifier = load_verifier(key) if key else None
    except (NoteError, OSError) as exc:
        fail(f"--key: {exc}")
    settings = load_settings()
    try:
        directory = load_directory(settings.config_dir)
    except ConfigError as exc:
        fail(f"cannot read contact names: {exc}")
    work = partial(_incident_log, incident=incident)
    try:
        messages, notes, pattern_messages, notes_key = on_jetstream(
            settings, name="dooralert-report", work=work
        )
    except OSError as exc:
        fail(f"cannot reach NATS at {shown_url(settings)}: {exc}")
    pairs, unreadable = _readable(messages)
    alerts = [(s, e) for s, e in _readable(pattern_messages)[0] if isinstance(e, PatternDetected)]
    if not pairs:
        fail(f"no events for incident {incident}", 1)
    school = directory.school(pairs[0][1].school_id)
    built = build_report(
        pairs,
        now=datetime.now(UTC),
        checkpoints=notes,
        verifier=verifier,
        contact_names={c.id: c.name for c in directory.contacts},
        school_name=school.name if school else None,
        problems=[f"unreadable message {u}" for u in unreadable],
        pattern_alerts=alerts,
        notes_key=notes_key,
        notes_retention=timedelta(days=settings.notes_retention_days),
    )
    typer.echo(render_html(built) if fmt == "html" else render_markdown(built), nl=False)


def _log_origin(settings: Settings) -> str:
    if settings.log_origin:
        return settings.log_origin
    return f"dooralert.example/{service_directory(settings).district.id}"


async def _run_ledger(
    settings: Settings, signer: Signer, origin: str, targets: list[WitnessTarget]
) -> None:
    from nats.errors import Error as NatsError

    from services.audit.ledger import Ledger
    from services.audit.witness import Witnesses
    from services.eventlog import NatsConnectError, connect, new_guard
    from services.runtime.healthserver import HealthServer

    running: list[tuple[Client, Ledger]] = []  # once connected: what readiness looks at

    def ready() -> dict[str, bool]:
        nc, ledger = running[0] if running else (None, None)
        return {
            "nats": bool(nc and nc.is_connected),
            "following": bool(ledger and ledger.following),
        }

    # /livez from before NATS is reached; ready once connected and following the log.
    health = HealthServer(
        "ledger", host=settings.metrics_host, port=settings.metrics_port, checks=ready
    )
    await health.start()
    try:
        attempts = settings.nats_reconnect_attempts
        guard = new_guard(settings.nats_url, "dooralert-ledger", attempts=attempts)
        nc = await connect(settings.nats_url, name="dooralert-ledger", guard=guard)
        # Only once connected: a signal before that ends the process the default way.
        stop = asyncio.Event()
        guard.stop = stop.set  # closed for good: stop, and exit non-zero below
        guard.exit_if_stuck(after=settings.shutdown_grace_seconds + 10)
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
            running.append((nc, ledger))
            log.info(
                "ledger.start", origin=origin, key=signer.verifier.line, witnesses=len(targets)
            )
            # The witnesses run beside the ledger and never stop it: a failed send waits a round.
            witnesses = Witnesses(targets, settings)
            sending = asyncio.create_task(
                witnesses.run(stop, lambda: ledger.latest_note, ledger.resolved_signed)
            )
            try:
                await ledger.run(stop)
            finally:
                stop.set()
                await sending
        except Exception:
            if guard.lost is None:
                raise  # signing the last checkpoint on a lost connection fails: known
        finally:
            guard.closing_now()
            try:
                await nc.close()
            except (OSError, RuntimeError, NatsError):
                # Closing a lost connection may fail flushing what it held (uvloop raises
                # RuntimeError on its closed transport, asyncio's loop an OSError).
                if guard.lost is None:
                    raise
        if guard.lost is not None:
            raise NatsConnectError(guard.lost)
    finally:
        await health.close()


@app.command("serve")
def audit_serve() -> None:
    """Run the audit ledger: Merkle tree over DOORALERT, signed checkpoints."""
    from services.audit.ledger import LedgerError
    from services.audit.note import NoteError, read_signing_key

    settings = load_settings()
    if settings.log_key_file is None:
        fail(
            "DOORALERT_LOG_KEY_FILE is not set; make a key with "
            "`dooralert keys generate --name NAME --out FILE`"
        )
    try:
        signer = read_signing_key(settings.log_key_file)
    except (OSError, NoteError) as exc:
        fail(f"cannot use signing key {settings.log_key_file}: {exc}")
    from services.audit.witness import witness_targets

    origin = _log_origin(settings)
    targets = witness_targets(service_directory(settings))
    from services.eventlog import EXIT_NATS_LOST, NatsConnectError
    from services.runtime import eventloop, memory

    eventloop.install(settings.event_loop)
    memory.settle_heap()
    try:
        asyncio.run(_run_ledger(settings, signer, origin, targets))
    except LedgerError as exc:
        fail(str(exc), 1)
    except NatsConnectError as exc:
        fail(str(exc), EXIT_NATS_LOST)  # logged as nats.connection_closed when it was lost
    except OSError as exc:
        fail(f"cannot reach NATS at {shown_url(settings)}: {exc}")


class _Progress:
    """A progress bar on stderr for long exports, made on the first report (a terminal only)."""

    def __init__(self) -> None:
        self._bar = ExitStack()
        self._update: Callable[[int], None] | None = None
        self._shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self._update is None:
            bar = typer.progressbar(length=total, label="exporting", file=sys.stderr)
            self._update = self._bar.enter_context(bar).update
        self._update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        self._bar.close()


@app.command("export")
def audit_export(
    out: Annotated[
        Path,
        typer.Option(
            help="directory to write events.jsonl, checkpoints.txt, log-key.pub, manifest.json"
        ),
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

    settings = load_settings()
    try:
        key_line = load_verifier(key).line if key else None
    except NoteError as exc:
        fail(f"--key: {exc}")
    progress = _Progress()
    work = partial(export, out=out, key_line=key_line, progress=progress)
    try:
        try:
            summary = on_jetstream(settings, name="dooralert-export", work=work)
        finally:
            progress.close()
    except OSError as exc:
        fail(f"cannot export to {out} from {shown_url(settings)}: {exc}")
    typer.echo(f"{out}: {summary.events} events, {summary.checkpoints} checkpoints")
    if summary.key_line is None:
        typer.echo("warning: no verifier key known; log-key.pub not written (pass --key)", err=True)


@app.command("verify")
def audit_verify(
    key: Annotated[str, typer.Option(help="the trusted verifier key line, or a file holding it")],
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export", help="verify this export directory offline (default: online from NATS)"
        ),
    ] = None,
    origin: Annotated[str | None, typer.Option(help="require this checkpoint origin")] = None,
    trusted: Annotated[
        list[Path] | None,
        typer.Option(
            "--trusted",
            "--checkpoint",
            help="a checkpoint kept outside the system (a note file, or a witness's .eml): the "
            "log must extend it and be at least as long (repeatable)",
        ),
    ] = None,
) -> None:
    """Check the log against its signed checkpoints; exit 0 only if it is intact."""
    from services.audit.note import NoteError, load_verifier
    from services.audit.trusted import load_trusted
    from services.audit.verify import ExportFormatError, verify_export

    try:
        verifier = load_verifier(key)
        extra = [named for p in trusted or [] for named in load_trusted(p)]
    except (NoteError, OSError, UnicodeDecodeError) as exc:
        fail(f"--key/--trusted: {exc}")
    if export_dir is not None:
        try:
            result = verify_export(export_dir, verifier, origin=origin, trusted=extra)
        except (ExportFormatError, OSError) as exc:
            fail(str(exc))
    else:
        from services.audit.source import verify_stream

        settings = load_settings()
        work = partial(verify_stream, verifier=verifier, origin=origin, trusted=extra)
        try:
            result = on_jetstream(settings, name="dooralert-verify", work=work)
        except OSError as exc:
            fail(f"cannot reach NATS at {shown_url(settings)}: {exc}")
    typer.echo(result.render())
    raise typer.Exit(0 if result.ok else 1)
