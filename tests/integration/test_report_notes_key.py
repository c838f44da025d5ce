"""A report's notes key on a real nats-server: made in one round trip for a new incident
(no read first), never replaced once it exists, stored before the report that needs it, and
the one key a retried or racing report under an Idempotency-Key seals and opens with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from services.domain.directory import load_directory
from services.eventlog import NOTE_KEYS_BUCKET, read_messages
from services.eventlog.notekeys import JetStreamNoteKeys
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.support import HAMLINE_KEY, eventually, report

AUTH = {"Authorization": f"Bearer {HAMLINE_KEY}"}
NOTES = "Two agents asked for the front office"


class CountingKV:
    """The bucket, counting the reads and creates made on it."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.gets = self.creates = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await self.kv.get(key)

    async def create(self, key: str, value: bytes) -> int:
        self.creates += 1
        return await self.kv.create(key, value)

    async def purge(self, key: str) -> None:
        await self.kv.purge(key)


async def counting_keys(js: JetStreamContext) -> tuple[JetStreamNoteKeys, CountingKV]:
    spy = CountingKV(await js.key_value(NOTE_KEYS_BUCKET))
    return JetStreamNoteKeys(spy, retry_for=2.0), spy  # type: ignore[arg-type]


async def test_a_new_incidents_key_is_made_without_reading_first(js: JetStreamContext) -> None:
    keys, spy = await counting_keys(js)
    assert await keys.create_if_absent("inc-1", b"first", likely_new=True) == b"first"
    assert (spy.gets, spy.creates) == (0, 1)
    assert await keys.get("inc-1") == b"first"


async def test_an_existing_key_is_kept_whether_or_not_the_incident_seemed_new(
    js: JetStreamContext,
) -> None:
    keys, spy = await counting_keys(js)
    await keys.create_if_absent("inc-2", b"first")
    assert (spy.gets, spy.creates) == (1, 1)  # without the hint: read, then create
    assert await keys.create_if_absent("inc-2", b"second", likely_new=True) == b"first"
    assert await keys.create_if_absent("inc-2", b"third") == b"first"
    assert await keys.get("inc-2") == b"first"


async def test_a_forgotten_key_is_made_anew_for_a_new_note(js: JetStreamContext) -> None:
    keys, _ = await counting_keys(js)
    await keys.create_if_absent("inc-3", b"first", likely_new=True)
    assert await keys.forget("inc-3")
    assert await keys.get("inc-3") is None
    assert await keys.create_if_absent("inc-3", b"second", likely_new=True) == b"second"
    assert await keys.get("inc-3") == b"second"


async def test_racing_creates_of_one_incident_end_with_one_key(js: JetStreamContext) -> None:
    keys, _ = await counting_keys(js)
    got = await asyncio.gather(
        *(keys.create_if_absent("inc-4", f"k{i}".encode(), likely_new=True) for i in range(8))
    )
    assert len(set(got)) == 1 and await keys.get("inc-4") == got[0]


@pytest.fixture
async def client(settings: Settings, js: JetStreamContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, directory=load_directory(settings.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


async def stored_at(js: JetStreamContext, stream: str, subject: str) -> float:
    """When the server stored the last message of `subject` (its own clock)."""
    msg = await js.get_last_msg(stream, subject)
    assert msg.time is not None
    return msg.time.timestamp()


async def test_the_key_is_stored_before_the_report_that_needs_it(
    js: JetStreamContext, client: httpx.AsyncClient
) -> None:
    resp = await client.post("/api/v1/encounters", json=report(notes=NOTES), headers=AUTH)
    assert resp.status_code == 202, resp.text
    incident = resp.json()["incident_id"]
    key_time = await stored_at(js, f"KV_{NOTE_KEYS_BUCKET}", f"$KV.{NOTE_KEYS_BUCKET}.{incident}")
    report_time = await stored_at(
        js, "DOORALERT", f"dooralert.hamline.{incident}.encounter.reported"
    )
    assert key_time <= report_time
    shown = await client.get(f"/api/v1/incidents/{incident}", headers=AUTH)
    assert shown.json()["report"]["notes"] == NOTES


async def test_a_retried_report_with_notes_names_its_incident_and_keeps_its_key(
    js: JetStreamContext, client: httpx.AsyncClient
) -> None:
    headers = {**AUTH, "Idempotency-Key": "door-7"}
    first = await client.post("/api/v1/encounters", json=report(notes=NOTES), headers=headers)
    assert first.status_code == 202 and first.json()["created"] is True
    incident = first.json()["incident_id"]
    kv = await js.key_value(NOTE_KEYS_BUCKET)
    key = (await kv.get(incident)).value
    again = await client.post("/api/v1/encounters", json=report(notes=NOTES), headers=headers)
    assert again.status_code == 202, again.text
    assert again.json()["incident_id"] == incident and again.json()["created"] is False
    other = await client.post(
        "/api/v1/encounters", json=report(notes="Something else entirely"), headers=headers
    )
    assert other.status_code == 409, other.text
    assert (await kv.get(incident)).value == key
    assert len(await read_messages(js, f"dooralert.*.{incident}.encounter.reported")) == 1
    shown = await client.get(f"/api/v1/incidents/{incident}", headers=AUTH)
    assert shown.json()["report"]["notes"] == NOTES


async def test_racing_reports_with_notes_under_one_key_store_one_readable_report(
    js: JetStreamContext, client: httpx.AsyncClient
) -> None:
    headers = {**AUTH, "Idempotency-Key": "door-8"}
    answers = await asyncio.gather(
        *(
            client.post("/api/v1/encounters", json=report(notes=NOTES), headers=headers)
            for _ in range(4)
        )
    )
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert len({a.json()["incident_id"] for a in answers}) == 1
    assert sum(a.json()["created"] for a in answers) == 1
    incident = answers[0].json()["incident_id"]
    assert len(await read_messages(js, f"dooralert.*.{incident}.encounter.reported")) == 1
    shown = await client.get(f"/api/v1/incidents/{incident}", headers=AUTH)
    assert shown.json()["report"]["notes"] == NOTES


async def test_without_the_notes_bucket_a_report_with_notes_is_not_recorded(
    settings: Settings, js: JetStreamContext
) -> None:
    quick = settings.model_copy(update={"publish_retry_seconds": 0.5})
    app = create_app(quick, directory=load_directory(settings.config_dir))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        await js.delete_key_value(NOTE_KEYS_BUCKET)
        resp = await c.post("/api/v1/encounters", json=report(notes=NOTES), headers=AUTH)
        assert resp.status_code == 503, resp.text
        assert await read_messages(js, "dooralert.*.*.encounter.reported") == []
        plain = await c.post("/api/v1/encounters", json=report(), headers=AUTH)
        assert plain.status_code == 202, plain.text


async def test_a_later_report_takes_an_incident_whose_key_was_made_ahead(
    js: JetStreamContext, client: httpx.AsyncClient
) -> None:
    kv = await js.key_value(NOTE_KEYS_BUCKET)
    first = await client.post("/api/v1/encounters", json=report(notes=NOTES), headers=AUTH)
    assert first.status_code == 202, first.text

    async def made_ahead() -> list[str]:
        try:
            keys = await kv.keys()
        except NoKeysError:  # the bucket read before any key was stored: none yet
            return []
        return [k for k in keys if k != first.json()["incident_id"]]

    ready = await eventually(made_ahead)
    second = await client.post("/api/v1/encounters", json=report(notes=NOTES), headers=AUTH)
    assert second.status_code == 202, second.text
    incident = second.json()["incident_id"]
    assert incident in ready  # its key was stored before the report was even sent
    shown = await client.get(f"/api/v1/incidents/{incident}", headers=AUTH)
    assert shown.json()["report"]["notes"] == NOTES
    # A report without notes, or under an Idempotency-Key, makes no use of them.
    plain = await client.post("/api/v1/encounters", json=report(), headers=AUTH)
    keyed = await client.post(
        "/api/v1/encounters", json=report(notes=NOTES), headers={**AUTH, "Idempotency-Key": "k"}
    )
    assert plain.json()["incident_id"] not in ready and keyed.json()["incident_id"] not in ready
