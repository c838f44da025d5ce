"""Who a report's roles reach is worked out once per directory, school and roles: the memo
answers as the directory does, and another directory (even a changed copy) is never answered
from a remembered one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from services.domain.directory import Directory, load_directory
from services.intake.reports import encounter_event, parse_report
from services.router.decide import SUPPORTED_CHANNELS, _Contacts, _reach, _ReachMemo, decide
from services.router.rules import load_rules
from tests.support import EXAMPLES, report

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
RULES = load_rules(EXAMPLES)
LAW = ("law-dept", "law-counsel")  # the example's law contacts


def directory_with(**changes: Any) -> Directory:
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    raw.update(changes)
    return Directory.model_validate(raw)


def alerted(directory: Directory, incident_id: str = "inc-1") -> list[tuple[str, str, str]]:
    event = encounter_event(
        parse_report(report(), now=NOW), incident_id=incident_id, actor="key-hamline", now=NOW
    )
    _, *requests = decide(event, rules=RULES, directory=directory, now=NOW)
    return [(r.data.role, r.data.contact_id, r.data.channel) for r in requests]  # type: ignore[attr-defined]


def test_the_memo_answers_as_the_directory_does_for_every_school_and_role() -> None:
    directory = load_directory(EXAMPLES)
    memo = _ReachMemo()
    roles = ("law", "safety", "principal", "leadership", "nobody")
    for school in [s.id for s in directory.schools] + ["no-such-school"]:
        for n in range(1, len(roles) + 1):
            want = _reach(directory, school, roles[:n], SUPPORTED_CHANNELS)
            assert memo.of(directory, school, roles[:n], SUPPORTED_CHANNELS) == want
            assert memo.of(directory, school, roles[:n], SUPPORTED_CHANNELS) == want  # again
        assert memo.of(directory, school, roles, frozenset({"webhook"})) == _reach(
            directory, school, roles, frozenset({"webhook"})
        )


def test_a_changed_directory_is_never_answered_from_the_one_before() -> None:
    before = load_directory(EXAMPLES)
    assert ("law", "law-dept", "email") in alerted(before)
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    after = directory_with(roles={**raw["roles"], "law": ["law-counsel"]})
    assert ("law", "law-dept", "email") not in alerted(after)
    assert alerted(before) != alerted(after)
    # Many directories in turn (more than are remembered), each with its own law contact:
    # each is answered for itself, also when asked again after the others.
    many = [directory_with(roles={**raw["roles"], "law": [cid]}) for cid in LAW * 3]
    for _ in range(2):
        for cid, d in zip(LAW * 3, many, strict=True):
            assert [c for role, c, _ in alerted(d) if role == "law"] == [cid]


def test_the_notification_ids_are_the_incidents_own() -> None:
    directory = load_directory(EXAMPLES)
    event_a = encounter_event(
        parse_report(report(), now=NOW), incident_id="inc-a", actor="key-hamline", now=NOW
    )
    event_b = encounter_event(
        parse_report(report(), now=NOW), incident_id="inc-b", actor="key-hamline", now=NOW
    )
    a = decide(event_a, rules=RULES, directory=directory, now=NOW)
    b = decide(event_b, rules=RULES, directory=directory, now=NOW)
    ids_a = {e.data.notification_id for e in a[1:]}  # type: ignore[attr-defined]
    ids_b = {e.data.notification_id for e in b[1:]}  # type: ignore[attr-defined]
    assert len(ids_a) == len(a) - 1 and not ids_a & ids_b


def test_the_plain_look_ups_answer_as_the_directory_does() -> None:
    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    school = raw["schools"][0]
    # A school whose principal is a district contact, and no school roles at all.
    overriding = {**school, "roles": {"principal": ["law-counsel"], "family_liaison": []}}
    for directory in (
        load_directory(EXAMPLES),
        directory_with(schools=[overriding, *raw["schools"][1:]]),
        directory_with(schools=[{**s, "roles": {}} for s in raw["schools"]]),
    ):
        contacts = _Contacts(directory)
        roles = ["law", "safety", "leadership", "principal", "family_liaison", "nobody"]
        for sid in [s.id for s in directory.schools] + ["no-such-school"]:
            for role in roles:
                assert contacts(role, sid) == directory.contacts_for(role, sid), (role, sid)
