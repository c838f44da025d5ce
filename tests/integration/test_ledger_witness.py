"""Subjects bound into the ledger, and rollback caught by witnesses: on a real nats-server with
a real aiosmtpd, an admin recreating streams, and `audit verify --trusted` from the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from schemas.envelope import originating
from schemas.events import IncidentResolved, SealedResolvedData, new_event_id
from services.audit.export import export
from services.audit.ledger import Ledger
from services.audit.note import (
    Checkpoint,
    Signer,
    join_notes,
    open_checkpoint,
    sign_checkpoint,
    split_notes,
)
from services.audit.source import verify_stream
from services.audit.trusted import load_trusted
from services.audit.witness import Witnesses, WitnessTarget
from services.eventlog import CHECKPOINTS_STREAM, STREAM, provision, publish_event, read_messages
from services.runtime.settings import Settings
from tests.integration.test_ledger import ORIGIN, publish_reports, run_ledger
from tests.support import REPO, SmtpServer, eventually, utcnow

WITNESS = WitnessTarget("law-counsel", "email", "deputy-counsel@district.example")


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


async def recreate_log(js: JetStreamContext, rows: list[tuple[str, bytes]]) -> None:
    """What an admin can do: delete DOORALERT, provision it again, publish these messages."""
    await js.delete_stream(STREAM)
    await provision(js)
    for subject, data in rows:
        await js.publish(subject, data, stream=STREAM)


async def witnessed_eml(
    js: JetStreamContext, ledger: Ledger, settings: Settings, smtp: SmtpServer, path: Path
) -> Path:
    """One witness round by real SMTP; the received message saved as an auditor would."""
    assert ledger.latest_note is not None
    assert await Witnesses([WITNESS], settings).round(ledger.latest_note) == 0
    received = smtp.received[-1]
    assert received.rcpt == [WITNESS.address]
    await asyncio.to_thread(path.write_bytes, received.raw)
    return path


async def test_an_event_moved_to_another_incident_online_fails_verify_naming_its_seq(
    js: JetStreamContext, signer: Signer
) -> None:
    await publish_reports(js, 6)
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=3, seconds=60), until_size=6)
    rows = [(m.subject, m.data) for m in await read_messages(js)]
    # byte-identical payloads; seq 5's event stored on seq 2's incident
    other = rows[1][0].split(".")[2]
    school, _, kind = rows[4][0].split(".", 3)[1:]
    rows[4] = (f"dooralert.{school}.{other}.{kind}", rows[4][1])
    await recreate_log(js, rows)

    result = await verify_stream(js, signer.verifier)
    text = result.render()
    assert text.splitlines()[-1].startswith(f"FAILED: seq 5: subject dooralert.{school}.{other}.")
    assert "checkpoint #2 (size 6): root does not match" in text


async def test_the_witness_gets_the_checkpoint_by_email_when_an_incident_is_resolved(
    js: JetStreamContext, signer: Signer, settings: Settings, smtp: SmtpServer, tmp_path: Path
) -> None:
    await publish_reports(js, 2)
    ledger = Ledger(js, signer, origin=ORIGIN, every=1000, seconds=600)
    witnesses = Witnesses([WITNESS], settings.model_copy(update={"witness_seconds": 600.0}))
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(ledger.run(stop)),
        asyncio.create_task(
            witnesses.run(stop, lambda: ledger.latest_note, ledger.resolved_signed)
        ),
    ]
    try:
        now = utcnow()
        resolved = originating(
            IncidentResolved,
            SealedResolvedData(),
            id=new_event_id(),
            source="intake",
            incident_id="inc-resolved",
            school_id="hamline",
            now=now,
        )
        await publish_event(js, resolved)
        # neither 1000 events nor 600 s: only the resolution makes it sign and send
        await eventually(lambda: bool(smtp.received), timeout=10)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    mail = smtp.received[0]
    assert mail.message["Subject"] == f"dooralert checkpoint {ORIGIN} size 3"
    body = mail.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert open_checkpoint(body, signer.verifier).size == 3  # covers the resolution (seq 3)
    eml = tmp_path / "witness.eml"
    eml.write_bytes(mail.raw)
    [(label, note)] = load_trusted(eml)
    assert label == "witness.eml" and open_checkpoint(note, signer.verifier).size == 3


async def test_a_failed_witness_send_is_retried_next_round_and_never_stops_anything(
    settings: Settings, smtp: SmtpServer, signer: Signer
) -> None:
    note = sign_checkpoint(signer, Checkpoint(ORIGIN, 4, b"\x01" * 32))
    smtp.handler.replies.append("451 try later")
    witnesses = Witnesses([WITNESS], settings)
    assert await witnesses.round(note) == 1
    assert await witnesses.round(note) == 0  # the next round delivers it
    assert await witnesses.round(note) == 0 and len(smtp.received) == 1  # and not twice


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rollback_deleted_checkpoints_and_a_fork_fail_against_a_witnessed_checkpoint(
    js: JetStreamContext,
    signer: Signer,
    settings: Settings,
    smtp: SmtpServer,
    tmp_path: Path,
    nats_server: object,
) -> None:
    await publish_reports(js, 6)
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=3, seconds=60), until_size=6)
    ledger = Ledger(js, signer, origin=ORIGIN)
    await ledger.resume()
    eml = await witnessed_eml(js, ledger, settings, smtp, tmp_path / "witness.eml")
    env = {**os.environ, "DOORALERT_NATS_URL": nats_server.url}  # type: ignore[attr-defined]
    key = signer.verifier.line

    # 1. rollback: an export cut to seq 4 with the checkpoint after it dropped
    out = tmp_path / "export"
    await export(js, out)
    lines = (out / "events.jsonl").read_text().splitlines()[:3]
    (out / "events.jsonl").write_text("\n".join(lines) + "\n")
    kept = split_notes((out / "checkpoints.txt").read_text())[:1]  # size 3 only
    (out / "checkpoints.txt").write_text(join_notes(kept))
    alone = cli("audit", "verify", "--export", str(out), "--key", key, env=env)
    assert alone.returncode == 0, alone.stdout + alone.stderr  # on its own it looks fine
    cut = cli("audit", "verify", "--export", str(out), "--key", key, "--trusted", str(eml), env=env)
    assert cut.returncode == 1
    assert (
        "FAILED: trusted checkpoint witness.eml (size 6) covers 6 events but the log has 3"
        in cut.stdout
    )

    # 2. the checkpoint stream deleted
    await js.delete_stream(CHECKPOINTS_STREAM)
    gone = cli("audit", "verify", "--key", key, "--trusted", str(eml), env=env)
    assert gone.returncode == 1 and "DOORALERT_CHECKPOINTS does not exist" in gone.stdout

    # 3. and then the log rewritten and signed afresh: a fork against the witness
    rows = [
        (m.subject, m.data.replace(b'"agent_count":', b'"agent_count": '))
        for m in await read_messages(js)
    ]
    await recreate_log(js, rows)
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=3, seconds=60), until_size=6)
    quiet = cli("audit", "verify", "--key", key, env=env)
    assert quiet.returncode == 0, quiet.stdout  # without the witness nothing shows
    forked = cli("audit", "verify", "--key", key, "--trusted", str(eml), env=env)
    assert forked.returncode == 1
    assert "fork at size 6: checkpoint #2 and trusted checkpoint witness.eml" in forked.stdout
    assert json.loads((out / "manifest.json").read_text())["version"] == 2


class CountedEvent(asyncio.Event):
    """An asyncio.Event that counts how often it was set."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


async def test_a_backlog_full_of_resolutions_wakes_the_witnesses_once_it_is_caught_up(
    js: JetStreamContext, signer: Signer
) -> None:
    # A ledger restarted after an outage: a resolution in every batch it reads. The witnesses
    # get one checkpoint covering the backlog, not one per batch.
    for k in range(6):
        await publish_reports(js, 4)
        resolved = originating(
            IncidentResolved,
            SealedResolvedData(),
            id=new_event_id(),
            source="intake",
            incident_id=f"inc-resolved-{k}",
            school_id="hamline",
            now=utcnow(),
        )
        await publish_event(js, resolved)
    ledger = Ledger(js, signer, origin=ORIGIN, every=1000, seconds=600, batch=5)
    ledger.resolved_signed = woken = CountedEvent()
    stop = asyncio.Event()
    task = asyncio.create_task(ledger.run(stop))
    try:
        await eventually(lambda: ledger.last is not None and ledger.last.size == 30, timeout=10)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert woken.sets == 1
