"""parse_event's one-step path (pydantic's JSON parser, for an event naming its type's current
version) gives exactly the event the long way gives (json.loads, the upcasters, validation),
and everything else still goes the long way: older versions are lifted, newer ones refused,
bad bytes refused with the field and the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import events as events_module
from schemas.events import (
    _ADAPTER,
    CURRENT_VERSIONS,
    Event,
    EventDecodeError,
    parse_event,
    serialize_event,
    upcast,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "events-v1" / "events.jsonl"


def the_long_way(payload: bytes) -> Event:
    event: Event = _ADAPTER.validate_python(upcast(json.loads(payload)))
    return event


def stored_v1() -> list[bytes]:
    return FIXTURE.read_bytes().splitlines()


def current() -> list[bytes]:
    """One event of each stored type at today's version, as today's writers store it."""
    return [serialize_event(parse_event(line)) for line in stored_v1()]


@pytest.fixture
def no_json_loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes | str]:
    """Counts the payloads that went the long way (json.loads)."""
    calls: list[bytes | str] = []
    loads = json.loads

    def counted(payload: bytes | str, **kwargs: Any) -> Any:
        calls.append(payload)
        return loads(payload, **kwargs)

    monkeypatch.setattr(events_module.json, "loads", counted)
    return calls


def test_todays_events_take_one_step_and_equal_the_long_way(no_json_loads: list[object]) -> None:
    payloads = current()
    no_json_loads.clear()
    parsed = [parse_event(p) for p in payloads]
    assert no_json_loads == []  # none went the long way
    assert parsed == [the_long_way(p) for p in payloads]
    assert {e.type for e in parsed} >= {"encounter.reported", "notification.requested"}
    assert all(e.schema_version == CURRENT_VERSIONS[e.type] for e in parsed)


def test_stored_v1_events_are_lifted_as_before(no_json_loads: list[object]) -> None:
    lines = stored_v1()
    parsed = [parse_event(line) for line in lines]
    # Read before anything else calls json.loads (the_long_way does: it would list every line).
    long_way = list(no_json_loads)
    assert parsed == [the_long_way(line) for line in lines]
    lifted = [line for line in lines if json.loads(line).get("schema_version", 1) == 1]
    assert lifted
    # Every event whose type is past v1 went the long way (the upcasters), not one step.
    assert {json.loads(p)["type"] for p in long_way if p in lifted} >= {
        "encounter.reported",
        "incident.resolved",
    }
    assert all(e.schema_version == CURRENT_VERSIONS[e.type] for e in parsed)


def test_a_v1_event_that_also_validates_as_today_is_lifted() -> None:
    """A v1 report without notes is valid against today's model too (schema_version 1):
    not current, so it is lifted, and says v2 like any other read."""
    raw = json.loads(next(p for p in current() if b'"encounter.reported"' in p))
    raw["schema_version"] = 1
    raw["data"] = {k: v for k, v in raw["data"].items() if not k.startswith("notes")}
    payload = json.dumps(raw).encode()
    assert _ADAPTER.validate_json(payload).schema_version == 1  # the trap
    event = parse_event(payload)
    assert event.schema_version == 2
    assert event == the_long_way(payload)


@pytest.mark.parametrize("notes", [True, False])
def test_an_event_without_a_version_is_read_as_v1_the_long_way(
    no_json_loads: list[object], notes: bool
) -> None:
    """Without `schema_version` an event is v1 (the upcasters' rule), whatever today's model
    defaults it to: lifted the long way, with or without the field v1 and v2 differ in."""
    raw = json.loads(next(p for p in stored_v1() if b'"encounter.reported"' in p))
    raw.pop("schema_version", None)
    if not notes:
        raw["data"].pop("notes")
    payload = json.dumps(raw).encode()
    no_json_loads.clear()
    event = parse_event(payload)
    assert no_json_loads == [payload]  # the long way
    assert event == the_long_way(payload)
    assert event.data.notes_v1 == raw["data"].get("notes")  # type: ignore[attr-defined]


def test_a_newer_version_is_refused_by_name() -> None:
    raw = json.loads(current()[0])
    raw["schema_version"] = CURRENT_VERSIONS[raw["type"]] + 1
    with pytest.raises(EventDecodeError, match="newer dooralert"):
        parse_event(json.dumps(raw).encode())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"{}", "(event)"),
    ],
)
def test_bad_bytes_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError) as err:
        parse_event(payload)
    assert reason in str(err.value)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than json.loads recurses (RecursionError)
        b'{"type": "notification.sent", "data": {"attempt": ' + b"9" * 5000 + b"}}",  # digits
        b'{"type": ["notification.sent"]}',  # unhashable type (TypeError in the upcasting)
        b'{"type": "encounter.reported", "schema_version": 1, "data": 5}',  # data no object
    ],
    ids=["deep", "long-number", "list-type", "data-not-object"],
)
def test_unreadable_bytes_are_refused_as_undecodable_not_raised_otherwise(payload: bytes) -> None:
    """Whatever json.loads or the upcasting raises on bad bytes is an EventDecodeError: the
    consumer sets such a message aside (consumer.run_handler) instead of failing its handler
    and having it redelivered until max_deliver."""
    with pytest.raises(EventDecodeError):
        parse_event(payload)


def test_a_refused_field_is_named_without_its_value() -> None:
    raw = json.loads(next(p for p in current() if b'"notification.requested"' in p))
    raw["data"]["channel"] = "carrier-pigeon-secret-value"
    with pytest.raises(EventDecodeError) as err:
        parse_event(json.dumps(raw).encode())
    assert "data.channel" in str(err.value).replace("notification.requested.", "")
    assert "carrier-pigeon-secret-value" not in str(err.value)


@pytest.mark.parametrize(
    "text",
    ['"\\ud800 lone surrogate"', "NaN", '"line\\u2028sep"', '"\\u0000"', '"é \\u00e9"'],
)
def test_odd_json_reads_as_json_loads_reads_it_or_is_refused(text: str) -> None:
    """What pydantic's parser and json.loads might read differently (lone surrogates, NaN,
    escapes) is read the same or refused, never read differently."""
    raw = json.loads(next(p for p in current() if b'"notification.requested"' in p))
    raw["data"]["role"] = "placeholder"  # the odd value as the role: any string goes
    odd = json.dumps(raw).replace('"placeholder"', text).encode()
    try:
        expected: Event | None = the_long_way(odd)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(EventDecodeError):
            parse_event(odd)
    else:
        assert parse_event(odd) == expected


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda raw: raw.update(type="Maria Lopez 651-555-0199"), "(event)"),
        (lambda raw: raw["data"].update({"Maria Lopez 651-555-0199": 1}), "data.(unknown field)"),
        (lambda raw: raw.update({"Maria Lopez 651-555-0199": 1}), "requested.(unknown field)"),
        (lambda raw: raw["data"].update(channel="Maria Lopez 651-555-0199"), "data.channel"),
        (lambda raw: raw["data"].update(tier="Maria Lopez 651-555-0199"), "data.tier"),
    ],
)
def test_a_refusal_names_where_but_never_what_the_payload_wrote(change: Any, where: str) -> None:
    """The reason is kept for ever in a message.dead_lettered event: no value, and no key the
    payload made up (an unknown type or field name is free text too)."""
    raw = json.loads(next(p for p in current() if b'"notification.requested"' in p))
    change(raw)
    with pytest.raises(EventDecodeError) as err:
        parse_event(json.dumps(raw).encode())
    reason = str(err.value)
    assert where in reason
    assert "Maria" not in reason and "651-555" not in reason


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400, "NaN", "Infinity"])
def test_no_event_holds_an_infinite_or_nan_number(number: str) -> None:
    """Refused both ways (one step read a 400-digit integer in a float field as infinity)."""
    from services.notifier.outcome import failed_event
    from tests.fixtures.notifier_support import request

    event = failed_event(
        request("inc-inf", "law-dept", role="law"),
        attempt=1,
        reason="timeout",
        retry_in=5.0,
        now=datetime.now(UTC),
    )
    stored = serialize_event(event).decode()
    assert parse_event(stored.encode()) == event
    odd = stored.replace('"next_attempt_in_seconds":5.0', f'"next_attempt_in_seconds":{number}')
    assert odd != stored
    with pytest.raises(EventDecodeError, match="next_attempt_in_seconds"):
        parse_event(odd.encode())
