"""The district directory: who holds which role, and which school an intake key belongs to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.domain.directory import (
    Directory,
    generate_intake_key,
    hash_intake_key,
    load_directory,
)
from services.runtime.config import ConfigError
from tests.support import EXAMPLES, HAMLINE_KEY, LINCOLN_KEY


def example() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    return raw


def validation_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as exc:
        Directory.model_validate(raw)
    return str(exc.value)


def test_the_example_directory_loads() -> None:
    d = load_directory(EXAMPLES)
    assert d.district.name == "Demo Public Schools"
    assert [s.id for s in d.schools] == ["hamline", "lincoln-park"]


@pytest.mark.parametrize(
    ("key", "school"), [(HAMLINE_KEY, "hamline"), (LINCOLN_KEY, "lincoln-park")]
)
def test_an_intake_key_identifies_its_school(key: str, school: str) -> None:
    found = load_directory(EXAMPLES).school_for_key(key)
    assert found is not None and found.id == school


@pytest.mark.parametrize(
    "key", ["", "wrong-key", HAMLINE_KEY.upper(), HAMLINE_KEY + " ", hash_intake_key(HAMLINE_KEY)]
)
def test_any_other_key_identifies_no_school(key: str) -> None:
    assert load_directory(EXAMPLES).school_for_key(key) is None


def test_intake_keys_are_held_as_hashes_only() -> None:
    d = load_directory(EXAMPLES)
    dumped = d.model_dump_json()
    assert HAMLINE_KEY not in dumped and LINCOLN_KEY not in dumped
    assert all(h.startswith("sha256:") for s in d.schools for h in s.intake_key_hashes)


def test_a_plain_key_written_where_a_hash_belongs_is_refused() -> None:
    raw = example()
    raw["schools"][0]["intake_key_hashes"] = [HAMLINE_KEY]
    assert "schools.0.intake_key_hashes.0" in validation_error(raw)


def test_a_generated_key_is_random_and_its_hash_finds_the_school() -> None:
    key = generate_intake_key()
    assert key.startswith("dak_") and len(key) >= 32
    assert key != generate_intake_key()
    raw = example()
    raw["schools"][1]["intake_key_hashes"] = [hash_intake_key(key)]
    found = Directory.model_validate(raw).school_for_key(key)
    assert found is not None and found.id == "lincoln-park"


def test_a_role_naming_an_undefined_contact_is_refused_with_a_suggestion() -> None:
    raw = example()
    raw["roles"]["law"] = ["law-dept", "law-counsle"]
    message = validation_error(raw)
    assert 'roles.law names undefined contact "law-counsle"' in message
    assert "did you mean 'law-counsel'?" in message


def test_a_school_role_naming_an_undefined_contact_is_refused() -> None:
    raw = example()
    raw["schools"][0]["roles"]["principal"] = ["nobody-at-all"]
    assert 'school hamline role principal names undefined contact "nobody-at-all"' in (
        validation_error(raw)
    )


def test_a_backup_naming_an_undefined_contact_is_refused() -> None:
    raw = example()
    raw["contacts"][0]["backups"] = ["ghost"]
    assert 'contact law-dept backups names undefined contact "ghost"' in validation_error(raw)


def test_duplicate_contact_or_school_ids_are_refused() -> None:
    raw = example()
    raw["contacts"].append(dict(raw["contacts"][0]))
    assert "duplicate contact ids: law-dept" in validation_error(raw)
    raw = example()
    raw["schools"].append(dict(raw["schools"][0]))
    assert "duplicate school ids: hamline" in validation_error(raw)


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("unknown district role", lambda r: r["roles"].update(lawyer=["law-dept"])),
        ("school-only role at district level", lambda r: r["roles"].update(principal=[])),
        ("unknown school role", lambda r: r["schools"][0]["roles"].update(janitor=[])),
        (
            "address that is not an address",
            lambda r: r["contacts"][0]["channels"][0].update(address="law dept"),
        ),
        (
            "header injection in an address",
            lambda r: r["contacts"][0]["channels"][0].update(address="a@b.example\r\nBcc: c@d"),
        ),
        ("contact with no channel", lambda r: r["contacts"][0].update(channels=[])),
        (
            "unknown channel type",
            lambda r: r["contacts"][0]["channels"].append({"type": "pager", "number": "1"}),
        ),
        ("no schools", lambda r: r.update(schools=[])),
        ("typo in a key", lambda r: r["contacts"][0].update(chanels=[])),
    ],
)
def test_invalid_directories_are_refused(where: str, change: Any) -> None:
    raw = example()
    change(raw)
    with pytest.raises(ValidationError):
        Directory.model_validate(raw)


def test_district_roles_come_from_the_district_and_school_roles_from_the_school() -> None:
    d = load_directory(EXAMPLES)
    assert [c.id for c in d.contacts_for("law", "hamline")] == ["law-dept", "law-counsel"]
    assert [c.id for c in d.contacts_for("principal", "hamline")] == ["principal-hamline"]
    assert [c.id for c in d.contacts_for("principal", "lincoln-park")] == ["principal-lincoln"]
    assert [c.id for c in d.contacts_for("family_liaison", "lincoln-park")] == ["liaison-lincoln"]


def test_an_unknown_school_or_role_has_no_contacts_but_district_roles_still_resolve() -> None:
    d = load_directory(EXAMPLES)
    assert d.contacts_for("principal", "unlisted") == []
    assert d.contacts_for("janitor", "hamline") == []
    assert [c.id for c in d.contacts_for("safety", "unlisted")] == ["safety-office"]


def test_a_missing_district_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_directory(tmp_path)
    assert str(tmp_path / "district.yaml") in str(exc.value)
    assert "file not found" in str(exc.value)


def test_a_broken_district_file_names_the_field(tmp_path: Path) -> None:
    raw = example()
    raw["roles"]["law"] = ["law-dept", "nobody"]
    (tmp_path / "district.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match='undefined contact "nobody"'):
        load_directory(tmp_path)


def test_webhook_urls_that_do_not_parse_are_refused_at_load() -> None:
    import yaml
    from pydantic import ValidationError

    from services.domain.directory import Directory
    from tests.support import EXAMPLES

    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    raw["contacts"][0]["channels"] = [{"type": "webhook", "url": "http://[::1/x"}]
    with pytest.raises(ValidationError, match="not a valid URL"):
        Directory.model_validate(raw)


def test_the_district_school_id_is_reserved() -> None:
    import yaml
    from pydantic import ValidationError

    from services.domain.directory import Directory
    from tests.support import EXAMPLES

    raw = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    raw["schools"][0]["id"] = "district"
    with pytest.raises(ValidationError, match="reserved"):
        Directory.model_validate(raw)
