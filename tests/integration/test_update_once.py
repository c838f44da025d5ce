"""A staff update is recorded once per submission, on a real nats-server with the router and
notifier running: the same update sent twice (a double press, a retry under the same
Idempotency-Key, the confirmation pressed twice at once) records one `encounter.updated` and
sends one round of update emails; two different updates both go out."""

from __future__ import annotations

import asyncio
import re

import httpx

from services.eventlog import read_incident
from tests.integration.conftest import Pipeline
from tests.support import HAMLINE_KEY, eventually, report

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SUBMISSION = re.compile(r'name="submission_id" value="([^"]+)"')


async def updates(pipeline: Pipeline, incident_id: str) -> list[str]:
    events = await read_incident(pipeline.js, incident_id)  # type: ignore[arg-type]
    return [e.id for e in events if e.type == "encounter.updated"]


async def settled(smtp: object, *, quiet: float = 1.5) -> int:
    """The number of emails received once none has arrived for `quiet` seconds."""
    count = -1
    while len(smtp.received) != count:  # type: ignore[attr-defined]
        count = len(smtp.received)  # type: ignore[attr-defined]
        await asyncio.sleep(quiet)
    return count


def update_mails(smtp: object, start: int) -> int:
    received = smtp.received[start:]  # type: ignore[attr-defined]
    prefixes = ("UPDATE: ", "ACTUALIZACIÓN: ")
    return sum(str(m.message["Subject"]).startswith(prefixes) for m in received)


async def test_api_update_retried_under_one_key_records_once(pipeline: Pipeline, smtp) -> None:
    sent = await pipeline.report(report())
    assert sent.status_code == 202, sent.text
    incident_id = sent.json()["incident_id"]
    await eventually(lambda: len(smtp.received) >= 1)
    before = await settled(smtp)
    url = f"/api/v1/incidents/{incident_id}/updates"
    auth = {"Authorization": f"Bearer {HAMLINE_KEY}"}

    # Sent twice at once, then once more after the first was folded in.
    first, second = await asyncio.gather(
        *(
            pipeline.client.post(
                url, json={"entry": "left"}, headers={**auth, "Idempotency-Key": "u-1"}
            )
            for _ in range(2)
        )
    )
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["event_id"] == second.json()["event_id"]
    assert sorted([first.json()["created"], second.json()["created"]]) == [False, True]
    third = await pipeline.client.post(
        url, json={"entry": "left"}, headers={**auth, "Idempotency-Key": "u-1"}
    )
    assert third.status_code == 202 and third.json() == {**first.json(), "created": False}
    assert await updates(pipeline, incident_id) == [first.json()["event_id"]]
    await eventually(lambda: update_mails(smtp, before) >= 1)
    after_one = await settled(smtp)
    one_round = update_mails(smtp, before)

    # The same key for another update is refused; another key is another update.
    reused = await pipeline.client.post(
        url, json={"agent_count": 3}, headers={**auth, "Idempotency-Key": "u-1"}
    )
    assert reused.status_code == 409, reused.text
    assert "Idempotency-Key" in reused.text
    other = await pipeline.client.post(
        url, json={"agent_count": 3}, headers={**auth, "Idempotency-Key": "u-2"}
    )
    assert other.status_code == 202 and other.json()["created"] is True
    assert await updates(pipeline, incident_id) == [
        first.json()["event_id"],
        other.json()["event_id"],
    ]
    await eventually(lambda: update_mails(smtp, after_one) >= one_round)
    await settled(smtp)
    assert update_mails(smtp, after_one) == one_round
    # Without a key, each update is its own (as before).
    bare = [await pipeline.client.post(url, json={"agent_count": 4}, headers=auth) for _ in "ab"]
    assert len({r.json()["event_id"] for r in bare}) == 2
    bad = await pipeline.client.post(
        url, json={"agent_count": 5}, headers={**auth, "Idempotency-Key": "x" * 201}
    )
    assert bad.status_code == 422 and "Idempotency-Key" in bad.text


async def signed_in(client: httpx.AsyncClient) -> str:
    token = CSRF.search((await client.get("/")).text)
    assert token
    signed = await client.post(
        "/signin",
        data={"csrf_token": token.group(1), "school_id": "hamline", "intake_key": HAMLINE_KEY},
    )
    assert signed.status_code == 303, signed.text
    again = CSRF.search((await client.get("/")).text)
    assert again
    return again.group(1)


async def test_update_form_confirmed_twice_records_once(pipeline: Pipeline, smtp) -> None:
    client = pipeline.client
    token = await signed_in(client)
    body = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in report().items()}
    body.pop("school_id")
    sent = await client.post("/report", data={**body, "submission_id": "r1", "csrf_token": token})
    assert sent.status_code == 303, sent.text
    incident_id = sent.headers["location"].split("/incidents/")[1].split("?")[0]
    await eventually(lambda: len(smtp.received) >= 1)
    before = await settled(smtp)

    page = await client.get(f"/incidents/{incident_id}")
    submission = SUBMISSION.search(page.text)
    assert submission, "the incident page's follow-up form carries a submission id"
    url = f"/incidents/{incident_id}/followup"
    form = {"csrf_token": token, "action": "agents_left", "submission_id": submission.group(1)}
    asked = await client.post(url, data=form)
    assert asked.status_code == 200 and 'name="confirm" value="yes"' in asked.text
    # The confirmation page carries the same submission: "Yes" pressed twice, at once.
    assert f'name="submission_id" value="{submission.group(1)}"' in asked.text
    done = await asyncio.gather(*(client.post(url, data={**form, "confirm": "yes"}) for _ in "ab"))
    assert [d.status_code for d in done] == [303, 303], [d.text for d in done]
    # And once more after it was recorded (the page sent again from the browser's history).
    again = await client.post(url, data={**form, "confirm": "yes"})
    assert again.status_code == 303, again.text
    [recorded] = await updates(pipeline, incident_id)
    await eventually(lambda: update_mails(smtp, before) >= 1)
    await settled(smtp)
    one_round = update_mails(smtp, before)

    # A different update from a page shown anew is its own update.
    page = await client.get(f"/incidents/{incident_id}")
    fresh = SUBMISSION.search(page.text)
    assert fresh and fresh.group(1) != submission.group(1)
    details = {
        "csrf_token": token,
        "action": "document",
        "submission_id": fresh.group(1),
        "agent_count": "3",
    }
    recorded_details = await client.post(url, data=details)
    assert recorded_details.status_code == 303, recorded_details.text
    ids = await updates(pipeline, incident_id)
    assert ids[0] == recorded and len(ids) == 2
    await eventually(lambda: update_mails(smtp, before) >= 2 * one_round)
    await settled(smtp)
    assert update_mails(smtp, before) == 2 * one_round
