"""Screening free text for what the protocol never records (pure): contact details, dates,
identity numbers, immigration status and people's names, in English and Spanish.

`screen(text)` answers *what kinds* of refused data a text seems to hold, never where or what:
callers say "looks like a phone number" without echoing the text. Matching is deliberately
eager (a held-back note costs a retype; a recorded birth date can never be deleted), with the
exceptions the protocol needs: the agencies (ICE, CBP, HSI), "immigration" alone (the agents),
"warrant", "judge", "detainer" (documents agents show), times of day and door numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import phonenumbers

from services.domain.i18n import text as i18n_text
from services.domain.names import fold, has_name

Kind = Literal["email", "phone", "date", "a_number", "ssn", "id_number", "immigration", "name"]
KINDS: tuple[Kind, ...] = (
    "email",
    "phone",
    "date",
    "a_number",
    "ssn",
    "id_number",
    "immigration",
    "name",
)
# The free-text fields screened, in reports, updates and the all-clear.
SCREENED_FIELDS = ("location", "notes", "note")

_I = re.IGNORECASE
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b[\w.+-]+\s*(?:\(at\)|\[at\]|@)\s*\w+\.\w+", _I)
# Each pattern that has alternatives needing a digit is written as (those)|(the others), so a
# text without digits (most notes) is searched with the others alone: the same matches.
_A_NUMBER_WORDS = (
    r"\bA-?(?:number|num|no)\b|\bA#"
    r"|\balien\s+(?:registration\s+)?(?:number|no|#)|\bn[uú]mero\s+(?:A|de\s+extranjero)\b"
)
A_NUMBER = re.compile(r"\bA[-#\s]?\d{3}[-\s]?\d{3}[-\s]?\d{2,3}\b|" + _A_NUMBER_WORDS, _I)
_SSN_WORDS = r"\bSSN\b|social\s+security|seguro\s+social"
SSN = re.compile(r"\b\d{3}[-\s]\d{2}[-\s]\d{4}\b|" + _SSN_WORDS, _I)
_ID_NUMBER_WORDS = (
    r"\b(?:passport|pasaporte|visa|I-94|licen[cs]e|licencia)\s*(?:no\.?|number|n[uú]mero|#)"
)
ID_NUMBER = re.compile(r"\b[A-Z]{1,3}-?\d{6,9}\b|" + _ID_NUMBER_WORDS, _I)
_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
    r"|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre"
    r"|noviembre|diciembre|ene|abr|ago|dic)"
)
_DATE_WORDS = (
    r"\bD\.?\s?O\.?\s?B\b|date\s+of\s+birth|birth\s*date|birthday|b-?day|\bborn\b"
    r"|fecha\s+de\s+nac|\bf\.?\s?n\.?\s?:|\bnacid[oa]s?\b|cumpleaños|\bnaci[oó]\b"
)
DATE = re.compile(
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"  # 2015-03-02
    r"|\b\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})\b"  # 03/02/2015, 3/2/15, 2.3.2015
    rf"|\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?!:)"  # March 2 (not "May 10:30")
    rf"|\b{_MONTH}\.?,?\s+(?:de\s+|of\s+)?(?:19|20)\d{{2}}\b"  # March 2015, marzo de 2015
    rf"|\b\d{{1,2}}(?:st|nd|rd|th|º)?\s+(?:de\s+|of\s+)?{_MONTH}\b"  # 2 de marzo, 2nd of March
    r"|" + _DATE_WORDS,
    _I,
)
# Matched on text folded to lower case without accents (so "deportación" = "deportacion"),
# only ever searched (found or not). Words that start a word, under one leading \b (a
# position inside a word is then ruled out once, not once per word: 5x faster), then phrases
# that may start inside one ("evergreen cards").
IMMIGRATION = re.compile(
    r"\b(?:undocumented\b|illegal(?:s|ly)?\b|aliens?\b|visas?\b|visado\b"
    r"|daca\b|dreamers?\b|tps\b|deport\w*|asyl(?:um|ee)s?\b|refugees?\b"
    r"|citizen(?:s|ship)?\b|naturali[sz]ed\b"
    r"|immigrants?\b|(?:ice|immigration)\s+hold\b|overstay\w*"
    r"|status\s+migratori\w*"
    r"|indocumentad[oa]s?\b|ilegal(?:es|mente)?\b"
    r"|mica\b|residencia\b"
    r"|asilo\b|asilad[oa]s?\b|refugiad[oa]s?\b|ciudadan\w*|nacionalidad\b"
    r"|inmigrantes?\b"
    r"|naturalizad[oa]s?\b|nationality\b)"
    r"|green\s*cards?|immigration\s+status|legal\s+status|work\s+permit"
    r"|permanent\s+residen\w*|(?:no|without|has|have|their|her|his)\s+papers\b"
    r"|removal\s+(?:order|proceedings)|order\s+of\s+removal"
    r"|sin\s+papeles|sin\s+documentos"
    r"|(?:no\s+tiene|tienen?|sus)\s+papeles|tarjeta\s+verde|residente\s+(?:permanente|legal)"
    r"|(?:estatus|situacion|estado|condicion)\s+(?:migratori\w*|legal)"
    r"|permiso\s+de\s+trabajo",
)
LONG_DIGITS = re.compile(r"\b\d{8,}\b")
# Seven-digit local numbers and "+" international ones phonenumbers' US-region pass can miss.
LOCAL_PHONE = re.compile(r"(?<![\d-])\d{3}[-.\s]\d{4}\b(?![-/.]\d)|\+\d[\d\s().-]{6,}\d")


# Most specific first, each blanked before the next: an SSN is not also a phone number. Each
# with the pattern a text without digits is searched with (the same matches there).
_MASKED: tuple[tuple[Kind, re.Pattern[str], re.Pattern[str]], ...] = (
    ("email", EMAIL, EMAIL),
    ("a_number", A_NUMBER, re.compile(_A_NUMBER_WORDS, _I)),
    ("ssn", SSN, re.compile(_SSN_WORDS, _I)),
    ("date", DATE, re.compile(_DATE_WORDS, _I)),
    ("id_number", ID_NUMBER, re.compile(_ID_NUMBER_WORDS, _I)),
)
# Any character `\d` matches (any Unicode decimal digit, as in the patterns).
_DIGIT = re.compile(r"\d")


def _mask(pattern: re.Pattern[str], text: str) -> tuple[bool, str]:
    """Whether `pattern` occurs, and the text with its matches blanked for later patterns."""
    if not pattern.search(text):
        return False, text
    return True, pattern.sub(lambda m: " " * len(m.group(0)), text)


def _has_phone(text: str) -> bool:
    for _ in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE):
        return True
    return bool(LOCAL_PHONE.search(text))


def screen(text: str | None) -> tuple[Kind, ...]:
    """The kinds of refused data `text` seems to hold (empty: nothing), in `KINDS` order."""
    if not text:
        return ()
    found: set[Kind] = set()
    rest = text
    # Without a digit no number, phone or numeric date can be there (blanking adds none).
    digits = _DIGIT.search(text) is not None
    # Most specific first, each blanked before the next: an SSN is not also a phone number.
    for kind, pattern, without_digits in _MASKED:
        hit, rest = _mask(pattern if digits else without_digits, rest)
        if hit:
            found.add(kind)
    if not digits:
        pass  # phonenumbers' matcher and both patterns below each need a digit
    elif _has_phone(rest):
        found.add("phone")
    elif LONG_DIGITS.search(rest):
        found.add("id_number")
    if IMMIGRATION.search(fold(text)):
        found.add("immigration")
    if has_name(rest):
        found.add("name")
    return tuple(k for k in KINDS if k in found)


def screen_fields(values: Mapping[str, object]) -> dict[str, tuple[Kind, ...]]:
    """Each screened free-text field of `values` that holds refused data, with its kinds."""
    out: dict[str, tuple[Kind, ...]] = {}
    for field in SCREENED_FIELDS:
        value = values.get(field)
        kinds = screen(value) if isinstance(value, str) else ()
        if kinds:
            out[field] = kinds
    return out


def looks_like(kinds: tuple[Kind, ...], language: str = "en") -> str:
    """What the text looks like, in words ("looks like a phone number; …"), never the text."""
    return "; ".join(i18n_text(f"screen.{kind}", language) for kind in kinds)


def refusal(kinds: tuple[Kind, ...], language: str = "en") -> str:
    """The API's reason for refusing a field: what it looks like, and what to do."""
    return i18n_text("screen.refused", language, what=looks_like(kinds, language))
