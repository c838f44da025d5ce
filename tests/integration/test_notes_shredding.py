"""Staff notes are stored only sealed and can be forgotten (crypto-shredding), on a real
nats-server: the stream's bytes never hold a note in clear; the responder's email, the
incident page, the API and the after-action report show it while the incident's key exists;
after `dooralert audit forget` (or once the key expires) every one of them says "notes removed
on <date>" while the exported log still verifies offline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from services.audit.export import export
from services.audit.ledger import Ledger
from services.audit.note import Signer
from services.domain.directory import load_directory
from services.eventlog import NOTE_KEYS_BUCKET, provision, read_incident, read_messages
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.integration.test_escalation import start_services
from tests.integration.test_ledger import run_ledger
from tests.support import HAMLINE_KEY, REPO, NatsServer, SmtpServer, eventually, report

NOTES = "Two agents, one showed a badge; they asked for the front office"
UPDATE = "They drove off in a grey van"
ALL_CLEAR = "Doors reopened after a walk-round"
ORIGIN = "dooralert.example/demo-district"
AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}


@pytest.fixture
async def client(settings: Settings, js: JetStreamContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, directory=load_directory(settings.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


def cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": settings.nats_url,
        "DOORALERT_CONFIG_DIR": str(settings.config_dir),
        "DOORALERT_LOG_FORMAT": "json",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stream_bytes(server: NatsServer) -> bytes:
    """Every byte of the event log's files on disk (the DOORALERT stream's store)."""
    files = [p for p in server.store.rglob("*") if p.is_file() and "/DOORALERT/" in str(p)]
    assert any("/msgs/" in str(p) for p in files), "the DOORALERT stream has no message blocks"
    found = []
    for path in files:
        try:
            found.append(path.read_bytes())
        except FileNotFoundError:
            # A consumer's state file written as *.tmp and renamed while we listed: its content
            # is the renamed file's, read if it was listed (message blocks are never renamed).
            assert path.suffix == ".tmp", f"{path} vanished"
    return b"".join(found)


async def report_with_notes(client: httpx.AsyncClient) -> tuple[str, str]:
    """A report with notes, an update with notes and the all-clear with a note; returns the
    incident id and the reporter's page URL."""
    resp = await client.post("/api/v1/encounters", json=report(notes=NOTES), headers=AUTH)
    assert resp.status_code == 202, resp.text
    incident_id = str(resp.json()["incident_id"])
    page_url = str(resp.json()["page_url"]).replace("http://127.0.0.1:8080", "")
    update = await client.post(
        f"/api/v1/incidents/{incident_id}/updates",
        json={"entry": "left", "notes": UPDATE},
        headers=AUTH,
    )
    assert update.status_code == 202, update.text
    done = await client.post(
        f"/api/v1/incidents/{incident_id}/resolve", json={"note": ALL_CLEAR}, headers=AUTH
    )
    assert done.status_code == 202, done.text
    return incident_id, page_url


async def test_notes_are_sealed_in_the_log_readable_while_kept_and_gone_after_forget(
    settings: Settings,
    js: JetStreamContext,
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    nats_server: NatsServer,
    tmp_path: Path,
) -> None:
    brokers = await start_services(settings)
    try:
        incident_id, page_url = await report_with_notes(client)

        def law_emails() -> str:
            bodies = [
                body.get_content()
                for got in smtp.received
                if got.rcpt == ["law-oncall@district.example"]
                and (body := got.message.get_body(("plain",))) is not None  # type: ignore[attr-defined]
            ]
            return "\n".join(bodies) if len(bodies) >= 3 else ""  # alert, update, all clear

        email = await eventually(law_emails, timeout=15)
    finally:
        for b in brokers:
            await b.stop()
    # The notifier opened them for the responder's emails: the alert, the update, the all-clear.
    assert NOTES in email and UPDATE in email and ALL_CLEAR in email

    # In the log only sealed: neither the messages nor the stream's files hold a note in clear.
    payloads = b"".join(m.data for m in await read_messages(js))
    on_disk = stream_bytes(nats_server)
    for text in (NOTES, UPDATE, ALL_CLEAR):
        assert text.encode() not in payloads and text.encode() not in on_disk
    assert b'"notes_sealed":{"alg":"A256GCM"' in payloads

    # Readable while the incident's key exists: the API, the page, the after-action report.
    # (The report as it stands carries the latest notes: the update's replace the report's.)
    api = (await client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)).json()
    assert api["report"]["notes"] == UPDATE and api["notes_removed_on"] is None
    assert any(u.get("notes") == UPDATE for u in api["updates"])
    page = await client.get(page_url)
    assert page.status_code == 200 and UPDATE in page.text
    before = cli("audit", "report", "--incident", incident_id, settings=settings)
    assert before.returncode == 0, before.stderr
    assert NOTES in before.stdout and UPDATE in before.stdout and ALL_CLEAR in before.stdout

    # Forgotten: the key destroyed, recorded as an event by the operator.
    forgot = cli("audit", "forget", "--incident", incident_id, settings=settings)
    assert forgot.returncode == 0, forgot.stderr
    assert "destroyed its notes key" in forgot.stdout
    events = await read_incident(js, incident_id)
    [forgotten] = [e for e in events if e.type == "notes.forgotten"]
    assert forgotten.source == "operator"
    today = f"{datetime.now(UTC):%Y-%m-%d}"

    api = (await client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)).json()
    assert api["report"]["notes"] is None and api["notes_removed_on"].startswith(today)
    assert all("notes" not in u for u in api["updates"])
    page = await client.get(page_url)
    assert UPDATE not in page.text and f"notes removed on {today}" in page.text
    es_page = await client.get(page_url, headers={"Accept-Language": "es"})
    assert f"notas eliminadas el {today}" in es_page.text
    after = cli("audit", "report", "--incident", incident_id, settings=settings)
    assert after.returncode == 0, after.stderr
    for text in (NOTES, UPDATE, ALL_CLEAR):
        assert text not in after.stdout
    assert f"notes removed on {today}" in after.stdout
    replayed = cli("audit", "replay", "--incident", incident_id, "--json", settings=settings)
    assert replayed.returncode == 0 and NOTES not in replayed.stdout

    # The log was never touched: signed and exported, it still verifies offline.
    signer = Signer.generate(ORIGIN)
    size = len(await read_messages(js))
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=1000, seconds=60), until_size=size)
    out = tmp_path / "export"
    await export(js, out)
    verified = cli(
        "audit", "verify", "--export", str(out), "--key", signer.verifier.line, settings=settings
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = (out / "events.jsonl").read_bytes()
    assert NOTES.encode() not in exported


async def test_an_expired_notes_key_shows_the_notes_removed(
    settings: Settings, js: JetStreamContext, client: httpx.AsyncClient
) -> None:
    incident_id, page_url = await report_with_notes(client)
    api = (await client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)).json()
    assert api["report"]["notes"] == UPDATE

    # A district that keeps notes one second: provision shortens the bucket's max age and the
    # server expires the key itself.
    assert any("updated bucket" in line for line in await provision(js, notes_retention=1.0))
    kv = await js.key_value(NOTE_KEYS_BUCKET)

    async def key_gone() -> bool:
        try:
            await kv.get(incident_id)
        except Exception:  # noqa: BLE001 - KeyNotFoundError or KeyDeletedError: gone
            return True
        return False

    await eventually(key_gone, timeout=10, every=0.25)
    await asyncio.sleep(0)
    api = (await client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)).json()
    assert api["report"]["notes"] is None and api["notes_removed_on"] is not None
    page = await client.get(page_url)
    assert UPDATE not in page.text and "notes removed on" in page.text
