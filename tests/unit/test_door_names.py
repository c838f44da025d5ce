"""A school's doors in district.yaml: a name, or a name per language like a contact's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.domain.directory import School


def school(*doors: object) -> School:
    return School.model_validate({"id": "s", "name": "S", "doors": list(doors)})


def test_a_door_per_language_is_its_english_name_shown_in_each_language() -> None:
    s = school("Front entrance", {"en": "Gym door", "es": " Puerta del gimnasio "})
    front, gym = s.doors
    assert gym == "Gym door" and gym.name_in("es") == "Puerta del gimnasio"
    assert gym.name_in("en") == "Gym door" and front.name_in("es") == "Front entrance"
    # What a report stored (the English name) reads in the reader's language; other text
    # stays as typed.
    assert s.door_name("Gym door", "es") == "Puerta del gimnasio"
    assert s.door_name("Boiler room", "es") == "Boiler room"
    # Written back as given.
    assert s.model_dump()["doors"] == [
        "Front entrance",
        {"en": "Gym door", "es": "Puerta del gimnasio"},
    ]
    assert School.model_validate(s.model_dump()) == s


@pytest.mark.parametrize(
    ("door", "reason"),
    [
        ({"es": "Puerta"}, "no 'en' entry"),
        ({"en": "Gym", "fr": "Porte"}, "unknown language 'fr'"),
        ({"en": "Gym", "es": "a\nb"}, "name.es must be one line"),
        ({"en": "Gym", "es": "P" * 121}, "at most 120 characters"),
        ("", "at least 1 character"),
        (7, "valid string"),
    ],
)
def test_a_wrong_door_is_refused_saying_why(door: object, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as err:
        school(door)
    assert "doors.0" in str(err.value)
