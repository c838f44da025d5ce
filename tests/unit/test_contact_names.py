"""Contact names per language in district.yaml: `name` is a string or `{en: …, es: …}`; readers
get the name in their language, else the default language's; a mapping without the default
language, in an unknown language, or with an empty name is refused naming the contact."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.domain.directory import Directory, load_directory
from services.runtime.config import ConfigError
from tests.support import EXAMPLES

NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def example() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((EXAMPLES / "district.yaml").read_text())
    return raw


def with_name(name: object, contact: str = "law-dept") -> dict[str, Any]:
    raw = example()
    for c in raw["contacts"]:
        if c["id"] == contact:
            c["name"] = name
    return raw


def test_the_example_gives_one_contact_a_name_per_language() -> None:
    d = load_directory(EXAMPLES)
    safety = d.contact("safety-office")
    assert safety is not None
    assert safety.name == "Office of Safety and Security"  # the default language's
    assert safety.name_in("es") == "Oficina de Seguridad"
    assert safety.name_in("en") == safety.name_in("fr") == "Office of Safety and Security"
    law = d.contact("law-dept")
    assert law is not None and law.name_in("es") == law.name == "Law Department (on call)"


def test_a_per_language_name_survives_copies_of_the_directory() -> None:
    d = Directory.model_validate(with_name({"en": "Law", "es": "Legal"}))
    copied = d.model_copy(update={"schools": d.schools[:1]})
    law = copied.contact("law-dept")
    assert law is not None and law.name_in("es") == "Legal" and law.name == "Law"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ({"es": "Departamento Legal"}, "name has no 'en' entry"),
        ({"en": "Law", "fr": "Juridique"}, "name in unknown language 'fr'"),
        ({"en": "Law", "es": "  "}, "name.es must be one line of text"),
        ({"en": "Law", "es": "Legal\nDos"}, "name.es must be one line of text"),
        ({"en": 7}, "name.en must be one line of text"),
    ],
)
def test_a_bad_name_mapping_is_refused_naming_the_contact(
    name: object, why: str, tmp_path: Path
) -> None:
    (tmp_path / "district.yaml").write_text(yaml.safe_dump(with_name(name)))
    with pytest.raises(ConfigError) as exc:
        load_directory(tmp_path)
    assert f'contact "law-dept": {why}' in str(exc.value)


def test_an_email_names_its_recipient_in_the_recipients_language(tmp_path: Path) -> None:
    from services.notifier.plan import EmailDelivery, Found, PlanSettings, plan_delivery
    from tests.fixtures.notifier_support import encounter, request, test_directory
    from tests.support import TEST_KEYS

    plain = test_directory(tmp_path, "http://hooks.example")
    raw = plain.model_dump(mode="json")
    for c in raw["contacts"]:
        if c["id"] == "liaison-hamline":  # reads Spanish (language: es)
            c["name"] = {"en": "Family Liaison", "es": "Enlace con las familias"}
    directory = Directory.model_validate(raw)
    settings = PlanSettings(
        base_url="https://d.example", sender="d <a@b.invalid>", ack_link_days=7, keys=TEST_KEYS
    )
    req = request("inc-1", "liaison-hamline", role="family_liaison")
    found = Found(report=encounter("inc-1"))
    delivery = plan_delivery(req, found, directory=directory, settings=settings, now=NOW)
    assert isinstance(delivery, EmailDelivery)
    body = delivery.message.get_body(("plain",))
    assert body is not None
    assert "Usted (Enlace con las familias) recibe este aviso" in str(body.get_content())
