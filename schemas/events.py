"""The event envelope and the event types (DESIGN §4).

Every event is one frozen pydantic model: the envelope fields plus a typed `data` payload.
Events are serialized once, by `serialize_event`, and those bytes are what the log stores.
Readers go through `parse_event`, which upcasts older `schema_version`s before validating, and
readers of the log through `parse_stored`, which also binds the event to its subject.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
)
from pydantic.json_schema import SkipJsonSchema

from schemas.report import (
    Agency,
    AgentCount,
    Document,
    EncounterReport,
    Entry,
    Purpose,
    SignedByJudge,
    Token,
    no_control_characters,
)

Source = Literal["intake", "router", "notifier", "audit", "operator"]
Channel = Literal["email", "webhook", "apprise"]
Severity = Literal["info", "high", "critical"]

# Namespace for ids derived from other ids (uuid5): a redelivered message derives the same ids,
# so the server's duplicate window (Nats-Msg-Id) drops the second publish.
_NAMESPACE = uuid.UUID("6f1d3c52-6a3e-4c1e-9b5e-2f0d6c7a9e41")


def new_event_id() -> str:
    """A fresh time-ordered UUID (version 7 layout: 48-bit ms timestamp, then random)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


_NAMESPACE_BYTES = _NAMESPACE.bytes


def derive_id(*parts: str) -> str:
    """A deterministic id from other ids: the same inputs always give the same id.

    `str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))`, the same string, without building a
    `UUID` (a router's report derives nine ids): the name's SHA-1 under the namespace, its
    first 16 bytes with the version (5) and the RFC 4122 variant set, in 8-4-4-4-12 hex."""
    name = _NAMESPACE_BYTES + "\x1f".join(parts).encode()
    h = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Event(_Frozen):
    """The envelope shared by every event."""

    id: str
    type: str
    schema_version: int = 1
    source: Source
    incident_id: Token
    school_id: Token
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    correlation_id: str
    causation_id: str | None = None
    actor: str


class Recipient(_Frozen):
    """One contact on one channel, named by role and id, never by address."""

    notification_id: str
    role: str
    contact_id: str
    channel: Channel


class EscalationDecidedData(_Frozen):
    routes: list[str] = Field(description="names of the rules.yaml routes that matched")
    severity: Severity
    notify_roles: list[str]
    require_ack: list[str]
    ack_deadline: AwareDatetime | None = None
    recipients: list[Recipient]
    unresolved_roles: list[str] = Field(
        default_factory=list, description="roles the rule named that have no contact"
    )


NotificationKind = Literal["alert", "escalation", "update", "resolved", "reopened", "pattern"]


class NotificationRequestedData(_Frozen):
    notification_id: str
    role: str
    contact_id: str
    channel: Channel
    tier: int = 0
    severity: Severity
    routes: list[str]
    kind: NotificationKind = Field(
        default="alert",
        description="alert: the first report; escalation: a missed deadline or unreachable "
        "contact; update/resolved/reopened: follow-ups (reopened: the all-clear was withdrawn, "
        "the agents are back); pattern: encounters across schools",
    )
    cause_id: str | None = Field(
        default=None, description="the event this notification is about (update, resolution)"
    )
    fallback_of: str | None = Field(
        default=None,
        description="the notification id whose channel failed permanently, when this request "
        "is the contact's next channel",
    )


class NotificationSentData(_Frozen):
    notification_id: str
    role: str
    contact_id: str
    channel: Channel
    attempt: int
    reply: str = Field(description="the receiving server's reply, addresses removed")


class NotificationFailedData(_Frozen):
    notification_id: str
    role: str
    contact_id: str
    channel: Channel
    attempt: int
    permanent: bool
    reason: str
    next_attempt_in_seconds: float | None = None
    contact_unreachable: bool = Field(
        default=False,
        description="a permanent failure on the contact's last channel: every channel failed",
    )


class IncidentAcknowledgedData(_Frozen):
    role: str
    contact_id: str
    notification_id: str | None = None
    via: Literal["link", "api"]


class EscalationRaisedData(_Frozen):
    tier: int = Field(description="1 = the first escalation after the initial alert")
    reason: Literal["deadline", "unreachable"]
    missing_roles: list[str] = Field(description="required roles with no acknowledgement")
    recipients: list[Recipient]
    next_deadline: AwareDatetime | None = None
    unreachable_contact_id: str | None = None


class SealedText(_Frozen):
    """Staff free text as the log stores it: AES-256-GCM under the incident's data key (kept
    outside the log, in a KV bucket with a retention limit), bound to incident, event and field
    as associated data. Without the key it is noise: that is how notes are forgotten."""

    alg: Literal["A256GCM"]
    kid: str = Field(max_length=120, description="which data key sealed it")
    nonce: str = Field(max_length=24, description="base64, 12 bytes")
    ct: str = Field(max_length=4096, description="base64 ciphertext with its 16-byte tag")


_V1_CLEAR = "clear text stored by a v1 writer (before notes were sealed); v2 writers never set it"


class EncounterUpdatedData(_Frozen):
    """What changed at the door since the report (the request body: notes in clear). Any
    field of the report but the door and the time can be corrected or added later: a report
    sent by the fast path (the door alone) is completed this way."""

    entry: Entry | None = None
    document: Document | None = None
    signed_by_judge: SignedByJudge | None = None
    agent_count: AgentCount | None = None
    agency_stated: Agency | None = None
    purpose: Purpose | None = None
    credentials_shown: StrictBool | None = None
    notes: Annotated[str, Field(max_length=500), AfterValidator(no_control_characters)] | None = (
        None
    )


class IncidentResolvedData(_Frozen):
    """The all-clear (the request body: the note in clear)."""

    note: Annotated[str, Field(max_length=500), AfterValidator(no_control_characters)] | None = None


class IncidentReopenedData(_Frozen):
    """The all-clear withdrawn: the agents are back, or it was sent by mistake (the request
    body: the note in clear)."""

    note: Annotated[str, Field(max_length=500), AfterValidator(no_control_characters)] | None = None


class SealedReport(EncounterReport):
    """The report as the log stores it (v2): the notes only sealed."""

    notes: SkipJsonSchema[None] = Field(default=None, exclude=True)
    notes_sealed: SealedText | None = None
    notes_v1: str | None = Field(default=None, description=_V1_CLEAR)


class SealedUpdateData(EncounterUpdatedData):
    """What changed at the door since the report, as stored (v2): the notes only sealed."""

    notes: SkipJsonSchema[None] = Field(default=None, exclude=True)
    notes_sealed: SealedText | None = None
    notes_v1: str | None = Field(default=None, description=_V1_CLEAR)


class SealedResolvedData(IncidentResolvedData):
    """The all-clear as stored (v2): its note only sealed."""

    note: SkipJsonSchema[None] = Field(default=None, exclude=True)
    note_sealed: SealedText | None = None
    note_v1: str | None = Field(default=None, description=_V1_CLEAR)


class SealedReopenedData(IncidentReopenedData):
    """The reopening as stored: its note only sealed."""

    note: SkipJsonSchema[None] = Field(default=None, exclude=True)
    note_sealed: SealedText | None = None


class NotesForgottenData(_Frozen):
    reason: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="why the operator forgot them (no personal data)"
    )


class PatternDetectedData(_Frozen):
    pattern: str
    window_minutes: int
    incident_ids: list[str]
    school_ids: list[str]
    severity: Severity
    recipients: list[Recipient]


class MessageDeadLetteredData(_Frozen):
    stream_sequence: int
    subject: str
    consumer: str
    reason: str


class LinksRevokedData(_Frozen):
    recipient: (
        Annotated[str, Field(max_length=80, pattern=r"^[a-z0-9_-]+(:[a-z0-9_-]+)?$")] | None
    ) = Field(
        default=None,
        description="whose status links stop working: a contact id, or a staff key's actor "
        "(intake-key:<id>); none: every status link of the incident",
    )


class EncounterReported(Event):
    type: Literal["encounter.reported"] = "encounter.reported"
    schema_version: int = 2
    data: SealedReport


class EscalationDecided(Event):
    type: Literal["escalation.decided"] = "escalation.decided"
    data: EscalationDecidedData


class NotificationRequested(Event):
    type: Literal["notification.requested"] = "notification.requested"
    data: NotificationRequestedData


class NotificationSent(Event):
    type: Literal["notification.sent"] = "notification.sent"
    data: NotificationSentData


class NotificationFailed(Event):
    type: Literal["notification.failed"] = "notification.failed"
    data: NotificationFailedData


class IncidentAcknowledged(Event):
    type: Literal["incident.acknowledged"] = "incident.acknowledged"
    data: IncidentAcknowledgedData


class EscalationRaised(Event):
    type: Literal["escalation.raised"] = "escalation.raised"
    data: EscalationRaisedData


class EncounterUpdated(Event):
    type: Literal["encounter.updated"] = "encounter.updated"
    schema_version: int = 2
    data: SealedUpdateData


class IncidentResolved(Event):
    type: Literal["incident.resolved"] = "incident.resolved"
    schema_version: int = 2
    data: SealedResolvedData


class IncidentReopened(Event):
    """The incident is open again after an all-clear (one per all-clear: its id derives from
    the incident and how many times it was reopened before)."""

    type: Literal["incident.reopened"] = "incident.reopened"
    data: SealedReopenedData


class NotesForgotten(Event):
    """The incident's notes key was destroyed (`dooralert audit forget`): its notes are gone."""

    type: Literal["notes.forgotten"] = "notes.forgotten"
    data: NotesForgottenData


class PatternDetected(Event):
    """Several schools reported encounters within a short window."""

    type: Literal["pattern.detected"] = "pattern.detected"
    data: PatternDetectedData


class MessageDeadLettered(Event):
    """A message a service could not read, set aside so it never blocks the consumer."""

    type: Literal["message.dead_lettered"] = "message.dead_lettered"
    data: MessageDeadLetteredData


class LinksRevoked(Event):
    """Status links of the incident issued until now stop working (`dooralert links revoke`)."""

    type: Literal["links.revoked"] = "links.revoked"
    data: LinksRevokedData


EVENT_MODELS: dict[str, type[Event]] = {
    model.model_fields["type"].default: model
    for model in (
        EncounterReported,
        EscalationDecided,
        NotificationRequested,
        NotificationSent,
        NotificationFailed,
        IncidentAcknowledged,
        EscalationRaised,
        EncounterUpdated,
        IncidentResolved,
        IncidentReopened,
        PatternDetected,
        MessageDeadLettered,
        LinksRevoked,
        NotesForgotten,
    )
}

AnyEvent = Annotated[
    EncounterReported
    | EscalationDecided
    | NotificationRequested
    | NotificationSent
    | NotificationFailed
    | IncidentAcknowledged
    | EscalationRaised
    | EncounterUpdated
    | IncidentResolved
    | IncidentReopened
    | PatternDetected
    | MessageDeadLettered
    | LinksRevoked
    | NotesForgotten,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)

# The version each event type is written at today.
CURRENT_VERSIONS: dict[str, int] = {
    name: model.model_fields["schema_version"].default for name, model in EVENT_MODELS.items()
}
CURRENT_VERSION = max(CURRENT_VERSIONS.values())


def _clear_to_v1_field(field: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """v1 -> v2 for an event with free text: v1 stored it in clear (those bytes stay as they
    are); v2 names that clear text `<field>_v1` beside the sealed `<field>_sealed`."""

    def step(raw: dict[str, Any]) -> dict[str, Any]:
        data = dict(raw.get("data") or {})
        if field in data:
            data[f"{field}_v1"] = data.pop(field)
        return {**raw, "data": data, "schema_version": 2}

    return step


# (event type, stored version) -> function lifting a raw dict to the next version. Stored events
# are never rewritten; readers lift them here.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("encounter.reported", 1): _clear_to_v1_field("notes"),
    ("encounter.updated", 1): _clear_to_v1_field("notes"),
    ("incident.resolved", 1): _clear_to_v1_field("note"),
}


class EventDecodeError(ValueError):
    """The bytes are not a dooralert event this version can read."""


class SubjectMismatch(EventDecodeError):
    """The payload is not the event its subject says it is (DESIGN §4): a forgery or a bug,
    set aside and never folded."""


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Lift a stored event's raw dict to the current schema version."""
    version = raw.get("schema_version", 1)
    current = CURRENT_VERSIONS.get(raw.get("type", ""))
    if current is None:
        return raw  # not a type this version knows: validation names what is wrong
    if isinstance(version, int) and version > current:
        raise EventDecodeError(
            f"{raw.get('type')!r} v{version} was written by a newer dooralert "
            f"(this one reads up to v{current}): upgrade to read it"
        )
    while isinstance(version, int) and version < current:
        step = UPCASTERS.get((raw.get("type", ""), version))
        if step is None:
            raise EventDecodeError(f"no upcaster for {raw.get('type')!r} v{version}")
        raw = step(raw)
        if not isinstance(raw.get("schema_version"), int) or raw["schema_version"] <= version:
            raise EventDecodeError(
                f"upcaster for {raw.get('type')!r} v{version} did not raise the version"
            )
        version = raw["schema_version"]
    return raw


def parse_event(payload: bytes | str) -> Event:
    """Decode stored bytes into a typed event, upcasting older versions.

    An event written at its type's current version, naming that version (as every writer
    does), is validated from the bytes in one step (pydantic's own JSON parser: a third of
    the time of `json.loads` and validating the dict; every service reads events on its
    hot path). Anything else, or anything that step refuses, goes the long way: parsed,
    lifted by the upcasters, validated, and refused with the field and the reason; the
    result is the same event (tests/unit/test_parse_event.py; ≈3,100 generated payloads
    compared in review). No event holds an infinite or NaN number (`allow_inf_nan=False`:
    no writer makes one, and one step would have read an integer literal too long for a
    float as infinity where the long way refused it)."""
    try:
        current: Event = _ADAPTER.validate_json(payload)
    except ValueError:  # ValidationError, whatever the reason: the long way says it
        pass
    else:
        if (
            "schema_version" in current.model_fields_set
            and current.schema_version == CURRENT_VERSIONS.get(current.type)
        ):
            return current
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        # Not UTF-8 or not JSON (both ValueErrors), and JSON `json.loads` will not read: a
        # number past Python's digit limit (a ValueError), nesting deeper than the recursion
        # limit. Refused like any bad bytes, so the message is set aside, not retried.
        raise EventDecodeError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise EventDecodeError("not a JSON object")
    try:
        event: Event = _ADAPTER.validate_python(upcast(raw))
    except ValidationError as exc:
        # Where and why only: pydantic's own text quotes the rejected input, and this reason
        # is kept for ever in a message.dead_lettered event (free text may be personal data).
        raise EventDecodeError(_describe(exc)) from None
    except (TypeError, ValueError) as exc:
        # An upcaster's or our own: an unhashable `type` (a list), `data` that is no object.
        raise EventDecodeError(str(exc)) from exc
    return event


def _describe(exc: ValidationError) -> str:
    """A validation error as `field: reason` lines, without anything the payload wrote: not
    its values (pydantic's own text quotes a rejected string: an unknown event type, a wrong
    literal), nor its unknown keys (an extra key is free text too). The reason is kept for
    ever in a message.dead_lettered event, and free text may be personal data."""
    lines = []
    for e in exc.errors(include_url=False, include_context=False):
        where = ".".join(_named(part) for part in e["loc"]) or "(event)"
        lines.append(f"{where}: {_reason(e['type'], e['msg'], e.get('input'))}")
    return "; ".join(lines)


def _named(part: str | int) -> str:
    """A location part as the reason may show it: an index, or a name the schemas define."""
    return str(part) if isinstance(part, int) or part in _schema_names() else "(unknown field)"


def _reason(kind: str, message: str, value: object) -> str:
    if kind == "union_tag_invalid":
        return "not an event type this version knows"
    if isinstance(value, str) and value and value in message:
        return kind  # pydantic's text would quote it
    return message


def _names_in(schema: object) -> set[str]:
    """Every property name and constant in a JSON schema (the fields and the event types)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            found.update(properties)
        if isinstance(schema.get("const"), str):
            found.add(schema["const"])
        for value in schema.values():
            found |= _names_in(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _names_in(value)
    return found


@cache
def _schema_names() -> frozenset[str]:
    """The names the schemas define, worked out when a refusal first needs them (≈12 ms:
    not at every service's start)."""
    return frozenset(_names_in(_ADAPTER.json_schema()) | set(EVENT_MODELS))


def subject_mismatch(event: Event, subject: str) -> str | None:
    """Why `event` cannot be the event stored on `subject`, or None when they agree.

    A service user may publish only on its own event types' subjects, so the subject is what
    the server vouches for; the payload is whatever the publisher wrote. Ids are tokens, so
    naming them reveals nothing personal.
    """
    parts = subject.split(".", 3)
    if len(parts) != 4:
        return f"subject {subject!r} is not <prefix>.<school>.<incident>.<event type>"
    _, school, incident, event_type = parts
    if event_type != event.type:
        return f"subject says {event_type} but the payload is {event.type}"
    if incident != event.incident_id:
        return (
            f"subject says incident {incident} but the payload is about incident "
            f"{event.incident_id}"
        )
    if school != event.school_id:
        return f"subject says school {school} but the payload is about school {event.school_id}"
    return None


def parse_stored(payload: bytes | str, subject: str) -> Event:
    """Decode a stored message and bind it to its subject: the one check every reader of the
    log goes through. Raises `SubjectMismatch` (an `EventDecodeError`) when the payload's
    type, school or incident differs from the subject's."""
    event = parse_event(payload)
    reason = subject_mismatch(event, subject)
    if reason is not None:
        raise SubjectMismatch(reason)
    return event


def serialize_event(event: Event) -> bytes:
    """The exact bytes the log stores for `event`."""
    return event.model_dump_json(exclude_none=False).encode()


def subject_for(event: Event, prefix: str = "dooralert") -> str:
    """`dooralert.<school_id>.<incident_id>.<event_type>` (DESIGN §3)."""
    return event_subject(event.school_id, event.incident_id, event.type, prefix)


def event_subject(
    school_id: str, incident_id: str, event_type: str, prefix: str = "dooralert"
) -> str:
    """The subject an event of `event_type` about that school and incident is stored on."""
    return f"{prefix}.{school_id}.{incident_id}.{event_type}"
