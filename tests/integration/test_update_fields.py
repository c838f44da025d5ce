"""Every detail the fast path leaves at its default can be added after Send, on a real
nats-server: the agency, how many agents, whether they showed credentials and whom they ask
about, through the JSON API and through the incident page's update form. The update names
only what changed; the incident (page, API, and so the follow-up emails, which fold the same
events) shows the latest values; old updates without these fields still read."""

from __future__ import annotations

import re

import httpx

from schemas.events import EncounterUpdated, SealedUpdateData, parse_event
from services.domain.incident import fold
from tests.integration.test_intake_fast_path import fresh_form
from tests.integration.test_intake_web import encounters, sign_in, web
from tests.support import HAMLINE_KEY, report

__all__ = ["web"]

AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}
FAST = report(
    location="Gym door",
    agency_stated="unknown",
    agent_count=1,
    credentials_shown=False,
    document="unknown",
    signed_by_judge="unsure",
    purpose="unspecified",
)


async def updates(js: object) -> list[EncounterUpdated]:
    events = [parse_event(m.data) for m in await encounters(js)]  # type: ignore[attr-defined]
    return [e for e in events if isinstance(e, EncounterUpdated)]


async def status(client: httpx.AsyncClient, incident_id: str) -> dict[str, object]:
    resp = await client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


async def test_the_api_adds_agency_count_credentials_and_purpose_after_a_fast_report(web, js):
    created = await web.post("/api/v1/encounters", json=FAST, headers=AUTH)
    assert created.status_code == 202, created.text
    incident_id = created.json()["incident_id"]
    added = {"agency_stated": "cbp", "agent_count": 3, "credentials_shown": True}
    added |= {"purpose": "student"}
    resp = await web.post(f"/api/v1/incidents/{incident_id}/updates", json=added, headers=AUTH)
    assert resp.status_code == 202, resp.text
    [update] = await updates(js)
    assert update.data.model_dump(exclude_none=True) == added
    shown = await status(web, incident_id)
    current = shown["report"]
    assert isinstance(current, dict)
    assert {k: current[k] for k in added} == added
    assert current["location"] == "Gym door" and current["document"] == "unknown"
    # A later update changes one of them again: the latest value wins.
    again = await web.post(
        f"/api/v1/incidents/{incident_id}/updates", json={"agency_stated": "ice"}, headers=AUTH
    )
    assert again.status_code == 202
    current = (await status(web, incident_id))["report"]
    assert isinstance(current, dict)
    assert current["agency_stated"] == "ice" and current["agent_count"] == 3


async def test_bad_values_are_refused_with_422_naming_the_field(web, js):
    created = await web.post("/api/v1/encounters", json=FAST, headers=AUTH)
    incident_id = created.json()["incident_id"]
    url = f"/api/v1/incidents/{incident_id}/updates"
    for body, field in (
        ({"agency_stated": "nsa"}, "agency_stated"),
        ({"purpose": "everyone"}, "purpose"),
        ({"agent_count": "3"}, "agent_count"),  # strict, as in the report
        ({"agent_count": 0}, "agent_count"),
        ({"credentials_shown": "yes"}, "credentials_shown"),
    ):
        resp = await web.post(url, json=body, headers=AUTH)
        assert resp.status_code == 422, (body, resp.text)
        assert field in resp.text, resp.text
    assert await updates(js) == []


def test_an_update_stored_before_these_fields_existed_still_reads() -> None:
    old = SealedUpdateData.model_validate({"entry": "left", "document": "judicial_warrant"})
    assert old.agency_stated is None and old.purpose is None and old.credentials_shown is None


async def test_the_update_form_adds_them_and_records_only_what_changed(web, js):
    await sign_in(web)
    body = await fresh_form(web)
    sent = await web.post("/report", data={**body, "door": "Gym door"})
    assert sent.status_code == 303, sent.text
    page_url = "/" + sent.headers["location"].split("/", 3)[3]
    incident_id = page_url.split("/")[2].split("?")[0]
    page = await web.get(page_url)
    for name in ("agency_stated", "agent_count", "credentials_shown", "purpose", "document"):
        assert f'name="{name}"' in page.text, name
    form = {
        "csrf_token": body["csrf_token"],
        "action": "document",
        # Everything the form sends; only these four differ from the fast-path report.
        "agency_stated": "hsi",
        "agent_count": "4",
        "credentials_shown": "true",
        "purpose": "records",
        "document": "unknown",
        "signed_by_judge": "unsure",
        "entry": "kept_outside",
    }
    done = await web.post(f"/incidents/{incident_id}/followup", data=form)
    assert done.status_code == 303, done.text
    [update] = await updates(js)
    assert update.data.model_dump(exclude_none=True) == {
        "agency_stated": "hsi",
        "agent_count": 4,
        "credentials_shown": True,
        "purpose": "records",
    }
    # The same details again change nothing: nothing recorded, nobody emailed again.
    same = await web.post(f"/incidents/{incident_id}/followup", data=form)
    assert same.status_code == 303
    assert len(await updates(js)) == 1
    # The page shows the latest values, each update's change named by its field.
    page = await web.get(page_url)
    facts = re.sub(r"\s+", " ", page.text)
    assert '<th scope="row">Agency stated</th><td>HSI</td>' in facts
    assert '<th scope="row">Agents</th><td>4</td>' in facts
    assert '<th scope="row">Credentials shown</th><td>Yes</td>' in facts
    assert '<th scope="row">Asking about</th><td>Records</td>' in facts
    assert "Agents: 4" in facts and "Credentials shown: Yes" in facts
    # The fold the notifier and the audit replay use sees the same.
    events = [parse_event(m.data) for m in await encounters(js)]  # type: ignore[attr-defined]
    state = fold(events, incident_id=incident_id)
    assert state is not None and state.report is not None
    assert state.report.agency_stated == "hsi" and state.report.purpose == "records"
    assert state.report.agent_count == 4 and state.report.credentials_shown is True
    # In Spanish too.
    es = await web.get(page_url + ("&" if "?" in page_url else "?") + "lang=es")
    assert '<th scope="row">Preguntan por</th><td>Expedientes</td>' in es.text
    assert "Mostraron credenciales" in es.text
    assert "Cuántos agentes" in es.text
