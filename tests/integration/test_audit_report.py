"""`dooralert audit report` on a real nats-server: an incident with an ack, an escalation and
a signed checkpoint, rendered by the CLI as an operator runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from services.audit.ledger import Ledger
from services.audit.note import Signer
from services.domain.directory import load_directory
from services.eventlog import read_incident, read_messages
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.integration.test_escalation import FAST_RULES, start_services, token_for
from tests.integration.test_ledger import run_ledger
from tests.support import EXAMPLES, HAMLINE_KEY, REPO, eventually, report

ORIGIN = "dooralert.example/demo-district"
NOTES = "Agent showed a form <script>alert(1)</script> & left a card"


@pytest.fixture
def fast(settings: Settings, tmp_path: Path) -> Settings:
    d = tmp_path / "config"
    d.mkdir()
    shutil.copy(EXAMPLES / "district.yaml", d / "district.yaml")
    (d / "rules.yaml").write_text(FAST_RULES)
    return settings.model_copy(update={"config_dir": d})


@pytest.fixture
async def client(fast: Settings, js: JetStreamContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fast, directory=load_directory(fast.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


def cli(*args: str, fast: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": fast.nats_url,
        "DOORALERT_CONFIG_DIR": str(fast.config_dir),
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


async def test_the_after_action_report_shows_acks_escalations_and_the_anchoring_checkpoint(
    fast: Settings, js: JetStreamContext, client: httpx.AsyncClient, smtp: object
) -> None:
    brokers = await start_services(fast)
    try:
        resp = await client.post(
            "/api/v1/encounters",
            json=report(location="Door 3 <gym>", notes=NOTES),
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert resp.status_code == 202, resp.text
        incident_id = str(resp.json()["incident_id"])
        ack = await client.post(
            f"/api/v1/incidents/{incident_id}/ack",
            json={"token": token_for(fast, incident_id, "law", "law-dept")},
        )
        assert ack.status_code == 202, ack.text

        async def escalated_and_delivered() -> bool:
            events = await read_incident(js, incident_id)
            return any(e.type == "escalation.raised" for e in events) and any(
                e.type == "notification.sent" and e.data.contact_id == "chief-of-schools"
                for e in events
            )

        await eventually(escalated_and_delivered, timeout=15)
    finally:
        for b in brokers:
            await b.stop()

    unanchored = cli("audit", "report", "--incident", incident_id, fast=fast)
    assert unanchored.returncode == 0, unanchored.stderr
    assert "Not yet anchored" in unanchored.stdout

    signer = Signer.generate(ORIGIN)
    size = len(await read_messages(js))
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=1000, seconds=60), until_size=size)

    md = cli("audit", "report", "--incident", incident_id, "--key", signer.verifier.line, fast=fast)
    assert md.returncode == 0, md.stderr
    text = md.stdout
    assert f"# After-action report: incident {incident_id}" in text
    assert "Hamline Elementary (hamline)" in text
    assert "| Location | Door 3 \\<gym\\> |" in text
    assert "| Rules matched | any-encounter |" in text and "| Severity | high |" in text
    assert "| law | law-dept | Law Department (on call) | email | alert | 0 |" in text
    assert "delivered " in text
    ack_row = next(
        line
        for line in text.splitlines()
        if line.startswith("| law | law-dept |") and "| api |" in line
    )
    assert ack_row.split(" | ")[-1].strip(" |").endswith("s")  # the delay after notification
    esc = next(line for line in text.splitlines() if line.startswith("| 1 | deadline |"))
    assert "| safety |" in esc and "Chief of Schools (chief-of-schools)" in esc
    assert "Never acknowledged: safety" in text
    assert f"- Checkpoint #1 of {ORIGIN}, tree size {size}" in text
    assert f"- Signature verifies with key `{ORIGIN}+{signer.key_id.hex()}`" in text
    assert "@" not in text  # names, never addresses

    html = cli("audit", "report", "--incident", incident_id, "--format", "html", fast=fast)
    assert html.returncode == 0, html.stderr
    page = html.stdout
    assert page.startswith("<!doctype html>") and "@media print" in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; left a card" in page
    assert "Door 3 &lt;gym&gt;" in page
    assert "Chief of Schools (chief-of-schools)" in page
    assert f"<td>{size}</td>" in page and "not checked (pass --key" in page
    assert "@" not in page.replace("@media", "").replace("@page", "")

    missing = cli("audit", "report", "--incident", "no-such-incident", fast=fast)
    assert missing.returncode == 1 and "no events for incident no-such-incident" in missing.stderr
    bad = cli("audit", "report", "--incident", ">", fast=fast)
    assert bad.returncode == 2 and "is not an incident id" in bad.stderr
