"""The committed JSON Schema and AsyncAPI files match the models."""

from __future__ import annotations

from services.cli.schemafiles import HERE, generate


def test_committed_schema_files_are_current() -> None:
    stale = [
        rel
        for rel, text in generate().items()
        if not (HERE / rel).exists() or (HERE / rel).read_text() != text
    ]
    assert not stale, f"stale schema files {stale}: run `make schemas` and commit the result"


def test_every_event_type_has_a_schema_file() -> None:
    files = {p.name for p in (HERE / "json").glob("*.json")}
    assert "encounter.reported.v1.json" in files and "notification.failed.v1.json" in files
