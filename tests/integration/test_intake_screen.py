"""The free-text screen through the intake, on a real nats-server and real SMTP: the API refuses
personal data with 422 naming the field and what it looks like; the form sends the alert at once
without the held-back text and shows it back to its writer only. The text is nowhere else: not in
any stream's raw bytes, not in the e-mails, not in the logs."""

from __future__ import annotations

import json

import pytest

from services.eventlog import read_messages
from services.intake.domain.screen import WITHHELD_LOCATION
from tests.integration.test_intake_web import form_of, sign_in
from tests.support import HAMLINE_KEY, eventually, report

SECRET_NOTES = "student Maria Lopez DOB 2015-03-02; mom phone 651-555-0199 maria.lopez@gmail.com"
# Pieces that must never be stored, logged or e-mailed.
PIECES = ("Maria", "Lopez", "2015-03-02", "651-555-0199", "gmail")
AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}


async def every_stored_byte(js) -> bytes:  # type: ignore[no-untyped-def]
    """Every message (subject, headers, data) of every stream and KV bucket on the server."""
    out = bytearray()
    for info in await js.streams_info():
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(info.config.name, seq)
            except Exception:  # noqa: BLE001 - a deleted sequence (KV overwrite) has no message
                continue
            out += (msg.subject or "").encode() + repr(msg.headers).encode() + (msg.data or b"")
    return bytes(out)


def assert_nowhere(*places: str | bytes) -> None:
    for place in places:
        text = place.decode(errors="replace") if isinstance(place, bytes) else place
        leaked = [p for p in PIECES if p in text]
        assert leaked == [], f"held-back text leaked: {leaked}"


async def types(js) -> list[str]:  # type: ignore[no-untyped-def]
    """The staff's events on the log (the router's own are left out)."""
    every = [".".join(m.subject.rsplit(".", 2)[-2:]) for m in await read_messages(js)]
    return [t for t in every if t.startswith(("encounter.", "incident.resolved"))]


async def reported(js):  # type: ignore[no-untyped-def]
    [one] = [m for m in await read_messages(js) if m.subject.endswith(".encounter.reported")]
    return one


async def test_api_refuses_personal_data_naming_each_field_and_what_it_looks_like(
    intake_client, js, capfd
):
    body = report(notes=SECRET_NOTES, location="Door 4, ask for Maria Lopez")
    resp = await intake_client.post("/api/v1/encounters", json=body, headers=AUTH)
    assert resp.status_code == 422
    reasons = {f["field"]: f["reason"] for f in resp.json()["fields"]}
    assert set(reasons) == {"notes", "location"}
    for kind in ("e-mail address", "phone number", "date", "person's name"):
        assert f"looks like {'an' if kind[0] == 'e' else 'a'} {kind}" in reasons["notes"]
    assert "looks like a person's name" in reasons["location"]
    assert await read_messages(js) == []
    assert_nowhere(resp.text, *capfd.readouterr())
    assert_nowhere(await every_stored_byte(js))


async def test_api_refuses_an_update_or_all_clear_note_with_personal_data(intake_client, js):
    created = await intake_client.post("/api/v1/encounters", json=report(), headers=AUTH)
    incident_id = created.json()["incident_id"]
    update = await intake_client.post(
        f"/api/v1/incidents/{incident_id}/updates",
        json={"notes": "they want the dad, phone 651-555-0199"},
        headers=AUTH,
    )
    assert update.status_code == 422
    assert update.json()["fields"][0]["field"] == "notes"
    assert "looks like a phone number" in update.json()["fields"][0]["reason"]
    resolved = await intake_client.post(
        f"/api/v1/incidents/{incident_id}/resolve",
        json={"note": "Maria Lopez went home, she is undocumented"},
        headers=AUTH,
    )
    assert resolved.status_code == 422
    [err] = resolved.json()["fields"]
    assert err["field"] == "note" and "immigration status" in err["reason"]
    assert "Maria" not in resolved.text and "651" not in update.text
    assert await types(js) == ["encounter.reported"]


async def test_form_sends_the_alert_at_once_without_the_held_back_text_and_shows_it_back(
    pipeline, js, smtp, capfd
):
    web = pipeline.client
    token = await sign_in(web)
    form = form_of(
        submission_id="held-1",
        csrf_token=token,
        location="Gym doors, Lincoln Ave side",
        notes=SECRET_NOTES,
    )
    resp = await web.post("/report", data=form)
    # Not a redirect: the page says what was held back, and offers the text back to clean.
    assert resp.status_code == 200, resp.text
    assert "some text was held back" in resp.text
    assert "looks like a phone number" in resp.text and "looks like a person" in resp.text
    assert SECRET_NOTES in resp.text and 'value="notes"' in resp.text
    report_msg = await reported(js)
    data = json.loads(report_msg.data)["data"]
    assert data["location"] == "Gym doors, Lincoln Ave side"
    assert not data.get("notes") and not data.get("notes_sealed")  # recorded without notes
    # The alert went out (e-mailed to the school's contacts) without the held-back text.
    await eventually(lambda: len(smtp.received) >= 1)
    for mail in smtp.received:
        parts = [p.get_content() for p in mail.message.walk() if p.get_content_maintype() == "text"]
        assert_nowhere(mail.raw, *parts)
    assert_nowhere(await every_stored_byte(js), *capfd.readouterr())

    incident_id = report_msg.subject.split(".")[2]
    # The same text sent back unedited is still refused: nothing recorded, told again.
    again = await web.post(
        f"/incidents/{incident_id}/followup",
        data={"csrf_token": token, "action": "notes", "notes": SECRET_NOTES},
    )
    assert again.status_code == 422 and "still looks like" in again.text
    assert await types(js) == ["encounter.reported"]
    # Cleaned, it goes as an update.
    cleaned = await web.post(
        f"/incidents/{incident_id}/followup",
        data={"csrf_token": token, "action": "notes", "notes": "Agents asked for a student."},
    )
    assert cleaned.status_code == 303, cleaned.text
    assert await types(js) == ["encounter.reported", "encounter.updated"]
    assert_nowhere(await every_stored_byte(js), *capfd.readouterr())


@pytest.mark.parametrize("lang", ["es"])
async def test_a_held_back_location_is_recorded_as_withheld_and_explained_in_spanish(
    intake_client, js, lang
):
    web = intake_client
    token = await sign_in(web)
    form = form_of(submission_id="held-2", csrf_token=token, location="Aula de Maria Lopez")
    resp = await web.post("/report", data=form, headers={"Accept-Language": lang})
    assert resp.status_code == 200, resp.text
    assert "se retuvo parte del texto" in resp.text
    assert "parece el nombre de una persona" in resp.text
    assert "Qué puerta o área: Aula de Maria Lopez" in resp.text
    assert WITHHELD_LOCATION in (await reported(js)).data.decode()
    assert_nowhere(await every_stored_byte(js))


async def test_a_form_with_other_errors_marks_the_held_back_field_too_and_records_nothing(
    intake_client, js
):
    web = intake_client
    token = await sign_in(web)
    form = form_of(submission_id="held-3", csrf_token=token, notes="call 651-555-0199")
    form.pop("agency_stated")
    resp = await web.post("/report", data=form)
    assert resp.status_code == 422
    assert "looks like a phone number" in resp.text
    assert await read_messages(js) == []
