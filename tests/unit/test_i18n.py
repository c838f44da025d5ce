"""One catalogue of words (services/domain/i18n.py): complete in both languages, one role table."""

from __future__ import annotations

import ast
import string
from enum import StrEnum

import pytest

from schemas.report import Agency, Document, Entry, Purpose, SignedByJudge
from services.domain import i18n
from services.domain.directory import KNOWN_ROLES
from services.domain.protocol import DEFAULT_PROTOCOL, Protocol
from services.intake import i18n as intake_i18n
from services.notifier import i18n as notifier_i18n
from tests.support import REPO

TABLES = {"VALUES": i18n.VALUES, "ROLES": i18n.ROLES, "MESSAGES": i18n.MESSAGES}


@pytest.mark.parametrize("name", TABLES)
def test_every_key_has_english_and_spanish_text(name: str) -> None:
    table = TABLES[name]
    assert set(table) == {"en", "es"}
    assert set(table["en"]) == set(table["es"]), set(table["en"]) ^ set(table["es"])
    blank = [(lang, key) for lang, words in table.items() for key, t in words.items() if not t]
    assert not blank


def test_a_translation_fills_the_same_placeholders_as_the_english() -> None:
    def fields(t: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(t) if f}

    en, es = i18n.MESSAGES["en"], i18n.MESSAGES["es"]
    assert {k: fields(en[k]) for k in en} == {k: fields(es[k]) for k in en}


@pytest.mark.parametrize("enum", [Agency, Document, SignedByJudge, Purpose, Entry])
def test_every_report_field_value_has_words_in_both_languages(enum: type[StrEnum]) -> None:
    for member in enum:
        for lang in i18n.LANGUAGES:
            assert member.value in i18n.VALUES[lang], (lang, member)


def test_every_document_has_built_in_protocol_text_in_both_languages() -> None:
    for doc in Document:
        for lang in i18n.LANGUAGES:
            assert f"protocol.{doc.value}" in i18n.MESSAGES[lang]
            assert DEFAULT_PROTOCOL.text(doc, lang) == i18n.text(f"protocol.{doc.value}", lang)


def test_the_role_table_names_exactly_the_known_roles() -> None:
    assert list(i18n.ROLES["en"]) == list(KNOWN_ROLES)


def test_pages_and_alerts_take_role_names_from_the_one_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(i18n.ROLES["es"], "law", "Abogacía del distrito")
    assert intake_i18n.label("law", "es") == "Abogacía del distrito"
    assert intake_i18n.label("law+safety", "es") == "Abogacía del distrito + Oficina de seguridad"
    assert notifier_i18n.role_name("law", "es") == "abogacía del distrito"


def _role_name_tables(tree: ast.AST) -> list[ast.Dict]:
    """Dict literals mapping two or more role ids to words."""
    roles = set(KNOWN_ROLES)
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        and len({k.value for k in node.keys if isinstance(k, ast.Constant)} & roles) > 1
        and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values)
    ]


def test_no_module_but_the_catalogue_holds_a_table_of_role_names() -> None:
    found = [
        path.relative_to(REPO).as_posix()
        for path in sorted((REPO / "services").rglob("*.py"))
        for _ in _role_name_tables(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == ["services/domain/i18n.py"] * len(i18n.LANGUAGES)


def test_roles_read_as_a_heading_on_the_pages_and_mid_sentence_in_alerts() -> None:
    assert intake_i18n.label("family_liaison") == "Family liaison"
    assert intake_i18n.label("principal", "es") == "Director(a)"
    assert notifier_i18n.role_name("law", "en") == "law department"
    assert notifier_i18n.role_name("family_liaison", "es") == "enlace con las familias"
    assert notifier_i18n.role_name("janitor", "es") == "janitor"


def test_a_stand_in_for_several_roles_reads_as_their_names_joined() -> None:
    assert i18n.label("law+safety") == "Law department + Safety office"
    assert i18n.label("law+safety", "es") == "Departamento legal + Oficina de seguridad"


def test_a_value_reads_in_the_language_asked_and_english_otherwise() -> None:
    assert i18n.label(Document.COURT_ORDER) == "Court order"
    assert i18n.label(Document.COURT_ORDER, "es") == "Orden de un tribunal"
    assert i18n.label(Document.COURT_ORDER, "fr") == "Court order"
    assert i18n.label("front door", "es") == "front door"


def test_a_sentence_is_filled_in_and_falls_back_to_english_then_its_key() -> None:
    assert i18n.text("error.rate", "es", seconds=30, phone="555").startswith(
        "Demasiados envíos en poco tiempo. Espere 30 segundos"
    )
    assert i18n.text("form.title", "fr") == "Law-enforcement agents at the door"
    assert i18n.text("no.such.key", "es") == "no.such.key"


def test_the_pages_and_the_alerts_speak_the_catalogue() -> None:
    assert intake_i18n.translate("es", "form.submit") == i18n.text("form.submit", "es")
    assert notifier_i18n.ack_text("es") == "Confirmar (usted se encarga)"
    assert notifier_i18n.kind_text("update", "en") == (
        "UPDATE: ",
        "UPDATE: the situation at the door has changed. Current details below.",
    )
    assert notifier_i18n.kind_text("alert", "es") == ("", "")
    assert notifier_i18n.protocol(Document.NONE, "es") == i18n.text("protocol.none", "es")


def test_a_district_protocol_overrides_the_built_in_text_per_language() -> None:
    custom = Protocol(documents={Document.NONE: {"en": "Call the lawyer."}})
    assert custom.text(Document.NONE, "en") == "Call the lawyer."
    assert custom.text(Document.NONE, "es") == i18n.text("protocol.none", "es")
    assert custom.text(Document.NONE, "fr") == "Call the lawyer."
    assert custom.always_text("es") == i18n.text("protocol.always", "es")
