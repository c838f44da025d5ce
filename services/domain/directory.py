"""The district directory (`district.yaml`): schools, roles, contacts and intake keys.

Contact details live only here and are looked up at send time; events name contacts by id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from schemas.report import TOKEN_PATTERN
from services.domain.i18n import DEFAULT_LANGUAGE, LANGUAGES
from services.runtime.config import load_yaml_model

Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
KeyHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
# One line, as the report's `location` field takes it.
DoorName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=120, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]

DISTRICT_ROLES = ("law", "safety", "leadership")
SCHOOL_ROLES = ("principal", "family_liaison")
KNOWN_ROLES = DISTRICT_ROLES + SCHOOL_ROLES


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmailChannel(_Strict):
    type: Literal["email"]
    address: Annotated[str, StringConstraints(pattern=r"^[^@\s<>\r\n]+@[^@\s<>\r\n]+$")]


class WebhookChannel(_Strict):
    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            httpx.URL(value)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if any(ord(ch) < 33 for ch in value):
            raise ValueError("not a valid URL: control characters or spaces")
        return value


class AppriseChannel(_Strict):
    """A chat, push or SMS target as an Apprise URL (e.g. `ntfy://…`, `msteams://…`,
    `twilio://…`). The URL often holds a token: it lives only here, never in the log."""

    type: Literal["apprise"]
    url: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*://\S+$")]


ChannelConfig = Annotated[
    EmailChannel | WebhookChannel | AppriseChannel, Field(discriminator="type")
]


class Contact(_Strict):
    """One person or desk. `name` in district.yaml is a string, or a name per language
    (`{en: Law Department, es: Departamento Legal}`, the default language required): `name`
    is then the default language's, and `name_in` picks the reader's."""

    id: Token
    name: str
    language: Literal["en", "es"] = "en"
    channels: list[ChannelConfig] = Field(min_length=1)
    backups: list[Token] = Field(default_factory=list)
    # The name in each language district.yaml gives one for (empty: `name` in every language).
    _names: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _names_per_language(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Contact:
        names: dict[str, str] = {}
        if isinstance(data, dict) and isinstance(data.get("name"), dict):
            contact_id = data.get("id")
            who = f'contact "{contact_id}"' if isinstance(contact_id, str) else "a contact"
            names = _language_names(who, data["name"])
            data = {**data, "name": names[DEFAULT_LANGUAGE]}
        contact: Contact = handler(data)
        if names:
            contact._names = names
        return contact

    def name_in(self, language: str) -> str:
        """The contact's name in `language`, else in the default language."""
        return self._names.get(language, self.name)


def _language_names(who: str, given: dict[Any, Any], *, field: str = "name") -> dict[str, str]:
    """A name-per-language mapping checked: known languages, one line of text each, the
    default language present. Errors name `who` (a contact: a mapping error deep in a list of
    contacts would otherwise read as `contacts.7.name`)."""
    names: dict[str, str] = {}
    for lang, text in given.items():
        if lang not in LANGUAGES:
            raise ValueError(
                f"{who}: name in unknown language {lang!r} (languages: {', '.join(LANGUAGES)})"
            )
        if not isinstance(text, str) or not text.strip() or not text.isprintable():
            raise ValueError(f"{who}: {field}.{lang} must be one line of text")
        names[str(lang)] = text.strip()
    if DEFAULT_LANGUAGE not in names:
        raise ValueError(
            f"{who}: {field} has no {DEFAULT_LANGUAGE!r} entry (the default language; the "
            "other languages fall back to it)"
        )
    return names


_DOOR_NAME: TypeAdapter[str] = TypeAdapter(DoorName)


class Door(str):
    """One of a school's doors, as district.yaml names it: a string, or a name per language
    like a contact's (`{en: Gym door, es: Puerta del gimnasio}`, the default language
    required). The string is the default language's name: what a report from this door
    stores as its location, whatever the language of the form (the log stays
    language-independent); `name_in` is what a reader sees."""

    names: dict[str, str]

    def __new__(cls, name: str, names: dict[str, str] | None = None) -> Door:
        door = super().__new__(cls, name)
        door.names = dict(names or {})
        return door

    def name_in(self, language: str) -> str:
        """The door's name in `language`, else in the default language."""
        return self.names.get(language, str(self))

    @classmethod
    def parse(cls, value: Any) -> Door:
        """A door from district.yaml's string or `{language: name}` mapping."""
        if isinstance(value, Door):
            return value
        if isinstance(value, dict):
            names = _language_names("a door", value)
            try:
                names = {lang: _DOOR_NAME.validate_python(n) for lang, n in names.items()}
            except ValidationError as exc:
                raise ValueError(f"door {names[DEFAULT_LANGUAGE]!r}: {_first_error(exc)}") from None
            return cls(names[DEFAULT_LANGUAGE], names)
        try:
            return cls(_DOOR_NAME.validate_python(value))
        except ValidationError as exc:
            raise ValueError(f"door {value!r}: {_first_error(exc)}") from None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda door: dict(door.names) if door.names else str(door)
            ),
        )


def _first_error(exc: ValidationError) -> str:
    return str(exc.errors()[0]["msg"])


class School(_Strict):
    id: Token
    name: str
    intake_key_hashes: list[KeyHash] = Field(default_factory=list)
    roles: dict[Literal["principal", "family_liaison"], list[Token]] = Field(default_factory=dict)
    # The doors staff pick from on the report form (one tap each); "other" is always offered.
    doors: list[Door] = Field(default_factory=list, max_length=30)

    def door_name(self, location: str, language: str) -> str:
        """A report's location in `language`: the door's name there when it is one of this
        school's doors (stored by its default-language name), else the location as typed."""
        door = next((d for d in self.doors if d == location), None)
        return door.name_in(language) if door is not None else location


class DistrictInfo(_Strict):
    id: Token
    name: str
    timezone: str = "UTC"
    emergency_phone: str | None = None
    # District staff (law, safety, leadership) sign in to the board of open incidents with
    # one of these keys (stored as hashes only, like school intake keys).
    board_key_hashes: list[KeyHash] = Field(default_factory=list)


class AuditConfig(_Strict):
    """`audit:` in district.yaml: who keeps copies of the ledger's checkpoints outside NATS."""

    # Contact ids; each gets the latest signed checkpoint by e-mail and/or webhook.
    witnesses: list[Token] = Field(default_factory=list)


_Item = TypeVar("_Item", School, Contact)


def _first_by_id(items: list[_Item]) -> tuple[list[_Item], dict[str, _Item]]:
    """The list and its id -> item index, the first of a repeated id winning (as a scan from
    the top would). The list is kept to tell the index is its own: a `model_copy` with new
    schools or contacts keeps the private attributes of the original."""
    out: dict[str, _Item] = {}
    for item in items:
        out.setdefault(item.id, item)
    return items, out


class Directory(_Strict):
    district: DistrictInfo
    roles: dict[Literal["law", "safety", "leadership"], list[Token]]
    contacts: list[Contact]
    schools: list[School] = Field(min_length=1)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    # Look-up indexes (not fields; the model is frozen, so they never go stale).
    _schools_by_id: tuple[list[School], dict[str, School]] | None = PrivateAttr(default=None)
    _contacts_by_id: tuple[list[Contact], dict[str, Contact]] | None = PrivateAttr(default=None)
    _schools_by_key: tuple[list[School], dict[str, School]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _references_resolve(self) -> Directory:
        ids = [c.id for c in self.contacts]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate contact ids: {', '.join(sorted(dupes))}")
        school_ids = [s.id for s in self.schools]
        if "district" in school_ids or "unknown" in school_ids:
            raise ValueError(
                'school ids "district" and "unknown" are reserved (district-wide '
                "and unreadable events use them)"
            )
        dupes = {i for i in school_ids if school_ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate school ids: {', '.join(sorted(dupes))}")
        known = set(ids)

        def check(where: str, cid: str) -> None:
            if cid not in known:
                hint = get_close_matches(cid, ids, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ValueError(f'{where} names undefined contact "{cid}"{extra}')

        for role, members in self.roles.items():
            for cid in members:
                check(f"roles.{role}", cid)
        for school in self.schools:
            for school_role, members in school.roles.items():
                for cid in members:
                    check(f"school {school.id} role {school_role}", cid)
        for contact in self.contacts:
            for cid in contact.backups:
                check(f"contact {contact.id} backups", cid)
        for cid in self.audit.witnesses:
            check("audit.witnesses", cid)
            witness = self.contact(cid)
            if witness and not any(ch.type in ("email", "webhook") for ch in witness.channels):
                raise ValueError(
                    f'audit.witnesses names contact "{cid}", who has no email or webhook channel'
                )
        return self

    # --- look-ups -------------------------------------------------------------------------

    def school(self, school_id: str) -> School | None:
        """The school with this id, if any."""
        if self._schools_by_id is None or self._schools_by_id[0] is not self.schools:
            # Built on first use: the notifier looks up a school and a contact per email,
            # and a district has hundreds of schools (a scan was 2% of its time at 600).
            self._schools_by_id = _first_by_id(self.schools)
        return self._schools_by_id[1].get(school_id)

    def contact(self, contact_id: str) -> Contact | None:
        """The contact with this id, if any."""
        if self._contacts_by_id is None or self._contacts_by_id[0] is not self.contacts:
            self._contacts_by_id = _first_by_id(self.contacts)
        return self._contacts_by_id[1].get(contact_id)

    def contacts_for(self, role: str, school_id: str) -> list[Contact]:
        """Contacts holding `role` for a school: district roles first, then the school's own."""
        ids: list[str] = []
        if role in self.roles:
            ids = list(self.roles[role])
        school = self.school(school_id)
        if school is not None and role in school.roles:
            ids = list(school.roles[role])
        return [c for c in (self.contact(i) for i in ids) if c is not None]

    def school_for_key(self, key: str) -> School | None:
        """The school whose intake key this is (keys are stored as SHA-256 hashes only).

        By the key's hash, in an index: a scan of every school's hashes with `compare_digest`
        was 5 % of intake's CPU per report at 600 schools. The look-up's timing can only tell
        how the SHA-256 of the key sent compares with the stored hashes, which helps nobody
        find a key (that would take a preimage)."""
        if self._schools_by_key is None or self._schools_by_key[0] is not self.schools:
            self._schools_by_key = (self.schools, _schools_by_key_hash(self.schools))
        return self._schools_by_key[1].get(hash_intake_key(key))

    def board_key_hash(self, key: str) -> str | None:
        """The stored hash of this district board key, if it is one."""
        digest = hash_intake_key(key)
        match = None
        for stored in self.district.board_key_hashes:
            if hmac.compare_digest(stored, digest):
                match = stored
        return match


def _schools_by_key_hash(schools: list[School]) -> dict[str, School]:
    """Each stored key hash -> its school; a hash listed under two schools (a mistake in
    district.yaml) names the last of them, as the scan this replaced did."""
    return {stored: school for school in schools for stored in school.intake_key_hashes}


def hash_intake_key(key: str) -> str:
    """Intake keys are random tokens (>=128 bits), so a plain SHA-256 suffices to store them."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def generate_intake_key() -> str:
    """A new random intake key (shown once; only its hash is stored)."""
    return "dak_" + secrets.token_urlsafe(24)


def load_directory(config_dir: Path) -> Directory:
    """`district.yaml` from `config_dir`, validated whole (`ConfigError` says what is wrong)."""
    return load_yaml_model(config_dir / "district.yaml", Directory)
