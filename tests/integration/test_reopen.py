"""An all-clear, or "the agents have left", pressed by mistake or overtaken by the agents coming
back, is corrected on a real nats-server with the router and notifier running: a second step
that works without JavaScript, the incident open again, everyone alerted told "agents back",
acknowledgements given before still counting, escalation resuming for the roles still to
confirm, and a later all-clear recorded once again."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from schemas.events import derive_id
from services.domain.directory import load_directory
from services.domain.incident import fold
from services.domain.tokens import AckClaim, Keyring, ack_token
from services.eventlog import read_incident
from services.intake.app import create_app
from services.notifier.main import build_broker as notifier_broker
from services.router.main import build_broker as router_broker
from services.router.rules import load_rules
from services.runtime.settings import Settings
from tests.support import EXAMPLES, HAMLINE_KEY, eventually, report

RULES = """
version: 1
routes:
  - name: any-encounter
    match: {}
    notify: [law, safety, principal]
    require_ack: [law, safety]
    ack_within: 2s
    severity: high
escalation:
  tiers:
    - notify: backups
      ack_within: 2s
    - notify: [leadership]
      ack_within: 2s
"""
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def fast(settings: Settings, tmp_path: Path) -> Settings:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(EXAMPLES / "district.yaml", config / "district.yaml")
    (config / "rules.yaml").write_text(RULES)
    return settings.model_copy(update={"config_dir": config})


@pytest.fixture
async def web(fast: Settings, js: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fast, directory=load_directory(fast.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


@pytest.fixture
async def services(fast: Settings, js: object) -> AsyncIterator[None]:
    directory = load_directory(fast.config_dir)
    brokers = [
        notifier_broker(fast, directory=directory),
        router_broker(fast, rules=load_rules(fast.config_dir), directory=directory),
    ]
    for b in brokers:
        await b.start()
    try:
        yield
    finally:
        for b in brokers:
            await b.stop()


async def csrf_of(client: httpx.AsyncClient, path: str = "/") -> str:
    match = CSRF.search((await client.get(path)).text)
    assert match
    return match.group(1)


async def signed_in_report(web: httpx.AsyncClient) -> tuple[str, str]:
    """Sign in as Hamline staff and send a report by the form: (csrf token, incident id)."""
    token = await csrf_of(web)
    signed = await web.post(
        "/signin", data={"csrf_token": token, "school_id": "hamline", "intake_key": HAMLINE_KEY}
    )
    assert signed.status_code == 303, signed.text
    token = await csrf_of(web)
    body = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in report().items()}
    body.pop("school_id")
    sent = await web.post("/report", data={**body, "submission_id": "r1", "csrf_token": token})
    assert sent.status_code == 303, sent.text
    return token, sent.headers["location"].split("/incidents/")[1].split("?")[0]


async def press(web: httpx.AsyncClient, incident_id: str, token: str, action: str) -> str:
    """Press a follow-up button, then "Yes" on the page it asks on (plain form posts, no
    JavaScript); returns the asking page's text."""
    url = f"/incidents/{incident_id}/followup"
    asked = await web.post(url, data={"csrf_token": token, "action": action})
    assert asked.status_code == 200, asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert f'name="action" value="{action}"' in asked.text
    done = await web.post(url, data={"csrf_token": token, "action": action, "confirm": "yes"})
    assert done.status_code == 303, done.text
    return asked.text


async def of_type(js: object, incident_id: str, type_: str) -> list[object]:
    return [e for e in await read_incident(js, incident_id) if e.type == type_]  # type: ignore[arg-type]


def subjects(smtp: object, start: int = 0) -> list[tuple[str, str]]:
    received = smtp.received[start:]  # type: ignore[attr-defined]
    return sorted((m.rcpt[0], str(m.message["Subject"])) for m in received)


async def test_all_clear_withdrawn_tells_everyone_resumes_escalation_and_clears_again(
    fast, js, web, smtp, services
):
    token, incident_id = await signed_in_report(web)
    await eventually(lambda: len(smtp.received) == 4)
    alerted = {r for r, _ in subjects(smtp)}
    # The law department confirms; the safety office does not.
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    claim = AckClaim(incident_id, "hamline", "law", "law-dept", "n", exp)
    acked = await web.post(
        f"/api/v1/incidents/{incident_id}/ack",
        json={"token": ack_token(Keyring.of(fast.signing_keys()), claim)},
    )
    assert acked.status_code == 202, acked.text

    await press(web, incident_id, token, "resolve")
    await eventually(lambda: len(smtp.received) == 8)
    # The deadline passes while the incident is resolved: nobody is escalated to.
    await asyncio.sleep(4.5)
    assert await of_type(js, incident_id, "escalation.raised") == []

    page = await web.get(f"/incidents/{incident_id}")
    assert 'value="reopen"' in page.text and "Agents are back / reopen" in page.text
    spanish = await web.get(f"/incidents/{incident_id}?lang=es")
    assert "Los agentes volvieron / reabrir" in spanish.text
    await web.get(f"/incidents/{incident_id}?lang=en")  # the choice is remembered: back
    asked = await press(web, incident_id, token, "reopen")
    assert "Withdraw the all clear?" in asked
    [reopened] = await of_type(js, incident_id, "incident.reopened")
    assert reopened.id == derive_id(incident_id, "incident.reopened", "0")  # type: ignore[attr-defined]

    # Everyone alerted before hears the agents are back, each with a link to confirm.
    await eventually(lambda: len(smtp.received) == 12)
    back = subjects(smtp, 8)
    assert {r for r, _ in back} == alerted
    assert all(s.startswith("AGENTS BACK: ") for _, s in back), back
    law_mail = next(m.message for m in smtp.received[8:] if "law-oncall" in m.rcpt[0])
    assert "Acknowledge" in law_mail.get_body(("plain",)).get_content()
    page = await web.get(f"/incidents/{incident_id}")
    assert 'id="reopened"' in page.text and 'value="resolve"' in page.text
    assert 'data-kind="reopened"' in page.text and "Agents back: " in page.text

    # The law department's confirmation still counts: only safety is escalated, from tier 1.
    [raised] = await eventually(lambda: _raised(js, incident_id), timeout=15)
    assert raised.data.tier == 1 and raised.data.missing_roles == ["safety"]

    # A later all-clear works again, once for a double submit.
    await press(web, incident_id, token, "resolve")
    again = await web.post(
        f"/incidents/{incident_id}/followup",
        data={"csrf_token": token, "action": "resolve", "confirm": "yes"},
    )
    assert again.status_code == 409
    resolved = await of_type(js, incident_id, "incident.resolved")
    assert [e.id for e in resolved] == [  # type: ignore[attr-defined]
        derive_id(incident_id, "incident.resolved"),
        derive_id(incident_id, "incident.resolved", "1"),
    ]
    state = fold(await read_incident(js, incident_id))
    assert state is not None and state.status == "resolved" and state.reopen_count == 1
    kinds = [n.kind for n in state.notifications if n.contact_id == "law-dept"]
    assert kinds == ["alert", "resolved", "reopened", "resolved"]
    # The second all-clear reaches everyone alerted, the safety office's backup too.
    await eventually(lambda: _all_clears(smtp) == 2 * len(alerted) + 1)
    assert {r for r, s in subjects(smtp) if s.startswith("ALL CLEAR")} == alerted | {
        "chief@district.example"
    }


def _all_clears(smtp: object) -> int:
    return sum(s.startswith("ALL CLEAR") for _, s in subjects(smtp))


async def _raised(js: object, incident_id: str) -> list[object] | None:
    raised = await of_type(js, incident_id, "escalation.raised")
    return raised or None


async def test_agents_left_is_corrected_by_agents_back_in_two_steps(fast, js, web, smtp, services):
    token, incident_id = await signed_in_report(web)
    await eventually(lambda: len(smtp.received) == 4)
    asked = await press(web, incident_id, token, "agents_left")
    assert "Tell everyone the agents have left?" in asked
    page = await web.get(f"/incidents/{incident_id}")
    assert 'value="agents_back"' in page.text and 'value="agents_left"' not in page.text
    spanish = await web.get(f"/incidents/{incident_id}?lang=es")
    assert "Los agentes volvieron" in spanish.text and 'value="agents_left"' not in spanish.text
    # One press only asks (in the page's language); nothing is recorded until "Yes".
    url = f"/incidents/{incident_id}/followup"
    first = await web.post(url, data={"csrf_token": token, "action": "agents_back"})
    assert "¿Avisar a todos que los agentes volvieron?" in first.text
    assert len(await of_type(js, incident_id, "encounter.updated")) == 1
    await web.get(f"/incidents/{incident_id}?lang=en")
    await press(web, incident_id, token, "agents_back")
    updates = await of_type(js, incident_id, "encounter.updated")
    assert [u.data.entry for u in updates] == ["left", "kept_outside"]  # type: ignore[attr-defined]
    # Two updates, each to everyone alerted; the page lists them per contact, by kind.
    await eventually(lambda: len(smtp.received) == 12)
    page = await web.get(f"/incidents/{incident_id}")
    assert 'value="agents_left"' in page.text and 'value="agents_back"' not in page.text
    row = page.text.split('id="alerted"')[1].split("</tr>")[1]
    assert row.count('data-kind="update"') == 2 and row.count('data-kind="alert"') == 1


async def test_reopening_an_open_incident_is_refused_and_records_nothing(fast, js, web):
    token, incident_id = await signed_in_report(web)
    url = f"/incidents/{incident_id}/followup"
    refused = await web.post(url, data={"csrf_token": token, "action": "reopen"})
    assert refused.status_code == 409
    api = await web.post(
        f"/api/v1/incidents/{incident_id}/reopen",
        json={},
        headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
    )
    assert api.status_code == 409 and "open" in api.text
    assert await of_type(js, incident_id, "incident.reopened") == []


async def test_contact_names_follow_the_page_language(fast, js, web, smtp, services):
    _, incident_id = await signed_in_report(web)
    await eventually(lambda: len(smtp.received) == 4)
    english = await web.get(f"/incidents/{incident_id}?lang=en")
    table = english.text.split('id="alerted"')[1].split("</table>")[0]
    assert "Office of Safety and Security" in table and "Oficina de Seguridad" not in table
    spanish = await web.get(f"/incidents/{incident_id}?lang=es")
    table = spanish.text.split('id="alerted"')[1].split("</table>")[0]
    # Given in Spanish in district.yaml; a name given only in English stays English.
    assert "Oficina de Seguridad" in table and "Law Department (on call)" in table
