"""The encounter report, v1 (DESIGN §4). Fields outside this model are refused."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

TOKEN_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]


class Agency(StrEnum):
    ICE = "ice"
    CBP = "cbp"
    HSI = "hsi"
    DHS_OTHER = "dhs_other"
    FBI = "fbi"
    US_MARSHALS = "us_marshals"
    LOCAL_POLICE = "local_police"
    OTHER = "other"
    UNKNOWN = "unknown"


class Document(StrEnum):
    NONE = "none"
    ADMINISTRATIVE_WARRANT = "administrative_warrant"
    ADMINISTRATIVE_SUBPOENA = "administrative_subpoena"
    JUDICIAL_WARRANT = "judicial_warrant"
    JUDICIAL_SUBPOENA = "judicial_subpoena"
    COURT_ORDER = "court_order"
    UNKNOWN = "unknown"


class SignedByJudge(StrEnum):
    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


class Purpose(StrEnum):
    STUDENT = "student"
    PARENT = "parent"
    STAFF = "staff"
    RECORDS = "records"
    UNSPECIFIED = "unspecified"


class Entry(StrEnum):
    KEPT_OUTSIDE = "kept_outside"
    LEFT = "left"
    ENTERED_WITH_WARRANT = "entered_with_warrant"
    ENTERED_WITHOUT_CONSENT = "entered_without_consent"


# Fields people may try to send and the schema refuses (extra="forbid" does the refusing; this
# list only lets the API explain why).
REFUSED_FIELDS = frozenset(
    {
        "immigration_status",
        "citizenship",
        "citizenship_status",
        "student_name",
        "student_names",
        "family_name",
        "parent_name",
        "name",
        "student_id",
        "date_of_birth",
        "birth_date",
        "address",
        "home_address",
        "phone",
        "phone_number",
        "a_number",
        "alien_number",
        "ssn",
        "passport",
        "visa",
        "country_of_birth",
        "ethnicity",
        "home_language",
        "photo",
    }
)

# Strict: "5", 5.0 or true are refused (422), not coerced; the report form converts its strings.
AgentCount = Annotated[StrictInt, Field(ge=1, le=50)]


def _single_line(value: str) -> str:
    # Cc covers C0, DEL and C1 (incl. NEL \x85); Zl/Zp are the Unicode line/paragraph separators.
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ValueError("must be a single line without control characters")
    return value


def no_control_characters(value: str) -> str:
    """Free text keeps line breaks and tabs, never other control characters (NUL…)."""
    if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


class EncounterReport(BaseModel):
    """What staff record at the door. No personal data about students or families."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    school_id: Token
    occurred_at: AwareDatetime | None = None
    location: Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_single_line)]
    agency_stated: Agency
    agent_count: AgentCount
    credentials_shown: StrictBool
    document: Document
    signed_by_judge: SignedByJudge
    purpose: Purpose
    entry: Entry
    notes: Annotated[str, Field(max_length=500), AfterValidator(no_control_characters)] | None = (
        None
    )

    def at(self, now: datetime) -> EncounterReport:
        """The report with `occurred_at` defaulted to `now` and empty notes dropped."""
        return self.model_copy(
            update={
                "occurred_at": self.occurred_at or now,
                "notes": self.notes or None,
            }
        )
