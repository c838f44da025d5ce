"""Looking up a school or a contact by id, in a district of hundreds of schools."""

from __future__ import annotations

from services.domain.directory import (
    Contact,
    Directory,
    School,
    hash_intake_key,
    load_directory,
)
from tests.support import EXAMPLES


def district_of(schools: int) -> Directory:
    """The example district with `schools` more schools, each with its own principal."""
    base = load_directory(EXAMPLES)
    contacts = [
        Contact.model_validate(
            {
                "id": f"principal-{i}",
                "name": f"Principal {i}",
                "channels": [{"type": "email", "address": f"p{i}@school.example"}],
            }
        )
        for i in range(schools)
    ]
    extra = [
        School(id=f"school-{i}", name=f"School {i}", roles={"principal": [f"principal-{i}"]})
        for i in range(schools)
    ]
    return Directory.model_validate(
        {
            **base.model_dump(),
            "contacts": [*base.model_dump()["contacts"], *(c.model_dump() for c in contacts)],
            "schools": [*base.model_dump()["schools"], *(s.model_dump() for s in extra)],
        }
    )


def test_every_school_and_contact_of_a_large_district_is_found_by_id() -> None:
    d = district_of(600)
    assert all(d.school(s.id) is s for s in d.schools)
    assert all(d.contact(c.id) is c for c in d.contacts)
    school, contact = d.school("school-599"), d.contact("principal-0")
    assert school is not None and school.name == "School 599"
    assert contact is not None and contact.name == "Principal 0"


def test_an_unknown_id_is_not_found() -> None:
    d = district_of(3)
    assert d.school("school-3") is None
    assert d.contact("nobody") is None


def test_a_copy_with_other_schools_and_contacts_finds_its_own() -> None:
    d = district_of(3)
    assert d.school("school-0") is not None  # the original's lookups are in use
    copy = d.model_copy(update={"schools": d.schools[1:], "contacts": d.contacts[1:]})
    assert copy.school(d.schools[0].id) is None
    assert copy.contact(d.contacts[0].id) is None
    assert copy.school("school-2") is d.school("school-2")
    assert d.school(d.schools[0].id) is d.schools[0]  # the original is untouched


def with_keys(d: Directory, keys: dict[str, list[str]]) -> Directory:
    """`d` with these intake keys (school id -> keys), stored as their hashes."""
    raw = d.model_dump()
    for school in raw["schools"]:
        school["intake_key_hashes"] = [hash_intake_key(k) for k in keys.get(school["id"], [])]
    return Directory.model_validate(raw)


def test_each_intake_key_of_a_large_district_finds_its_school() -> None:
    keys = {f"school-{i}": [f"key-{i}-a", f"key-{i}-b"] for i in range(600)}
    d = with_keys(district_of(600), keys)
    for i in (0, 1, 299, 599):
        for key in keys[f"school-{i}"]:
            found = d.school_for_key(key)
            assert found is not None and found.id == f"school-{i}"
    assert d.school_for_key("key-600-a") is None
    assert d.school_for_key(hash_intake_key("key-1-a")) is None  # the hash is not the key


def test_a_key_listed_under_two_schools_names_the_last_as_before() -> None:
    d = with_keys(district_of(3), {"school-0": ["shared"], "school-2": ["shared"]})
    found = d.school_for_key("shared")
    assert found is not None and found.id == "school-2"


def test_a_copy_with_other_schools_finds_keys_of_its_own() -> None:
    d = with_keys(district_of(3), {"school-0": ["k0"], "school-1": ["k1"]})
    assert d.school_for_key("k0") is not None  # the original's index is in use
    copy = d.model_copy(update={"schools": [s for s in d.schools if s.id != "school-0"]})
    assert copy.school_for_key("k0") is None
    assert copy.school_for_key("k1") is d.school("school-1")
    assert d.school_for_key("k0") is d.school("school-0")  # the original is untouched
