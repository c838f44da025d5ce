"""The intake API's answers to bad input, against a real nats-server: clear errors, no events."""

from __future__ import annotations

import re

import pytest

from services.eventlog import read_messages
from tests.support import HAMLINE_KEY, LINCOLN_KEY, TEST_KEYS, report


async def post(client, body=None, *, key=HAMLINE_KEY, content=None, headers=None):  # type: ignore[no-untyped-def]
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    if content is not None:
        return await client.post(
            "/api/v1/encounters", content=content, headers={**h, "content-type": "application/json"}
        )
    return await client.post("/api/v1/encounters", json=body, headers=h)


async def assert_no_events(js) -> None:  # type: ignore[no-untyped-def]
    assert await read_messages(js) == []


async def test_invalid_report_gets_422_naming_each_bad_field(intake_client, js):
    resp = await post(intake_client, report(agent_count=0, document="a-letter", location=""))
    assert resp.status_code == 422
    fields = {f["field"]: f["reason"] for f in resp.json()["fields"]}
    assert set(fields) == {"agent_count", "document", "location"}
    await assert_no_events(js)


async def test_missing_fields_are_named_as_required(intake_client, js):
    body = report()
    del body["entry"]
    resp = await post(intake_client, body)
    assert resp.status_code == 422
    assert resp.json()["fields"] == [{"field": "entry", "reason": "required"}]


@pytest.mark.parametrize("field", ["immigration_status", "student_name", "a_number", "colour"])
async def test_fields_outside_the_schema_are_refused(intake_client, js, field):
    resp = await post(intake_client, report(**{field: "x"}))
    assert resp.status_code == 422
    [err] = resp.json()["fields"]
    assert err["field"] == field and "not accepted" in err["reason"]
    await assert_no_events(js)


async def test_privacy_fields_are_refused_with_the_reason(intake_client, js):
    resp = await post(intake_client, report(immigration_status="undocumented"))
    assert "never records immigration status" in resp.json()["fields"][0]["reason"]


async def test_missing_key_is_401(intake_client, js):
    resp = await post(intake_client, report(), key=None)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    await assert_no_events(js)


async def test_wrong_key_is_401(intake_client, js):
    resp = await post(intake_client, report(), key="not-a-key")
    assert resp.status_code == 401


async def test_key_of_another_school_is_403(intake_client, js):
    resp = await post(intake_client, report(school_id="hamline"), key=LINCOLN_KEY)
    assert resp.status_code == 403
    await assert_no_events(js)


async def test_oversized_body_is_413(intake_client, js):
    resp = await post(intake_client, content=b"{" + b" " * 100_000 + b"}")
    assert resp.status_code == 413
    await assert_no_events(js)


@pytest.mark.parametrize("content", [b"not json", b"[1,2]", b"\xff\xfe", b"null", b"", b"[" * 3000])
async def test_malformed_bodies_are_422_not_500(intake_client, js, content):
    resp = await post(intake_client, content=content)
    assert resp.status_code == 422, resp.text
    assert resp.json()["fields"][0]["field"] == "(body)"


async def test_a_time_more_than_a_week_ago_is_refused(intake_client, js):
    resp = await post(intake_client, report(occurred_at="0001-01-01T00:00:00+14:00"))
    assert resp.status_code == 422
    assert resp.json()["fields"][0]["field"] == "occurred_at"
    await assert_no_events(js)


async def test_a_wrong_key_cannot_probe_which_incidents_exist(intake_client, js):
    resp = await post(intake_client, report())
    real = resp.json()["incident_id"]
    for incident_id in (real, "no-such-incident"):
        probe = await intake_client.get(
            f"/api/v1/incidents/{incident_id}", headers={"Authorization": "Bearer nope"}
        )
        assert probe.status_code == 401


async def test_an_ack_token_posted_to_another_incident_records_nothing(intake_client, js):
    from datetime import UTC, datetime, timedelta

    from services.domain.tokens import AckClaim, ack_token

    a = (await post(intake_client, report())).json()["incident_id"]
    b = (await post(intake_client, report())).json()["incident_id"]
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    token = ack_token(TEST_KEYS, AckClaim(a, "hamline", "law", "law-dept", "n", exp))
    resp = await intake_client.post(f"/api/v1/incidents/{b}/ack", json={"token": token})
    assert resp.status_code == 400
    assert await read_messages(js, "dooralert.*.*.incident.acknowledged") == []


async def test_future_time_is_refused(intake_client, js):
    resp = await post(intake_client, report(occurred_at="2999-01-01T00:00:00Z"))
    assert resp.status_code == 422
    assert resp.json()["fields"][0]["field"] == "occurred_at"


async def test_incident_status_needs_the_key_of_its_school_or_the_link_token(intake_client, js):
    resp = await post(intake_client, report())
    incident_id = resp.json()["incident_id"]
    url = f"/api/v1/incidents/{incident_id}"
    assert (await intake_client.get(url)).status_code == 401
    assert (
        await intake_client.get(url, headers={"Authorization": f"Bearer {LINCOLN_KEY}"})
    ).status_code == 403
    assert (await intake_client.get(url + "?token=forged")).status_code == 401
    token_url = resp.json()["status_url"].split("http://127.0.0.1:8080")[1]
    ok = await intake_client.get(token_url)
    assert ok.status_code == 200 and ok.json()["incident_id"] == incident_id
    missing = await intake_client.get(
        "/api/v1/incidents/nope", headers={"Authorization": f"Bearer {HAMLINE_KEY}"}
    )
    assert missing.status_code == 404


async def sign_in(client, key=HAMLINE_KEY, school="hamline") -> str:  # type: ignore[no-untyped-def]
    """Sign in the way a browser does (CSRF token from the page); returns the form's token."""
    page = await client.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = await client.post(
        "/signin", data={"csrf_token": token, "school_id": school, "intake_key": key}
    )
    assert resp.status_code == 303, resp.text
    page = await client.get("/")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


async def test_html_form_submits_to_the_same_handler_and_shows_the_incident(intake_client, js):
    # Staff sign in once per device (session cookie); the form no longer asks for the key.
    csrf = await sign_in(intake_client)
    page = await intake_client.get("/")
    assert page.status_code == 200 and 'name="notes"' in page.text
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in report().items()}
    form |= {"csrf_token": csrf, "submission_id": "form-1", "notes": ""}
    resp = await intake_client.post("/report", data=form)
    assert resp.status_code == 303
    incident = await intake_client.get(resp.headers["location"].split("http://127.0.0.1:8080")[1])
    assert incident.status_code == 200 and "Hamline Elementary" in incident.text
    again = await intake_client.post("/report", data=form)  # double submit: same incident
    # The same incident's page (its link's token is signed anew, so it differs once a second
    # boundary falls between the two answers).
    assert again.headers["location"].split("?")[0] == resp.headers["location"].split("?")[0]
    assert len(await read_messages(js, "dooralert.*.*.encounter.reported")) == 1


async def test_html_form_shows_field_errors_and_keeps_values(intake_client, js):
    csrf = await sign_in(intake_client)
    form = {
        "csrf_token": csrf,
        "school_id": "hamline",
        "location": "Gym door",
        "agent_count": "99",
        "submission_id": "form-2",
    }
    resp = await intake_client.post("/report", data=form)
    assert resp.status_code == 422
    assert "Gym door" in resp.text and 'id="agent_count-error"' in resp.text
    await assert_no_events(js)


async def test_healthz_reports_nats_and_the_pipeline(intake_client, js):
    from tests.support import eventually

    async def checked():
        resp = await intake_client.get("/healthz")
        return resp if resp.json()["status"] != "unknown" else None

    resp = await eventually(checked, timeout=5)
    # Just started, nothing waiting: healthy until nobody has pulled for the stall limit.
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["nats"] is True
    assert body["pipeline"]["consumers"]["router"]["num_pending"] == 0


async def test_concurrent_different_reports_under_one_idempotency_key_one_wins_one_is_409(
    intake_client, js
):
    import asyncio

    first, second = await asyncio.gather(
        post(intake_client, report(agent_count=2), headers={"Idempotency-Key": "race-1"}),
        post(intake_client, report(agent_count=7), headers={"Idempotency-Key": "race-1"}),
    )
    assert sorted([first.status_code, second.status_code]) == [202, 409]
    assert len(await read_messages(js, "dooralert.*.*.encounter.reported")) == 1
