"""The router's decision (pure): an encounter report in, the events to append out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from schemas.envelope import caused_by
from schemas.events import (
    Channel,
    EncounterReported,
    EscalationDecided,
    EscalationDecidedData,
    Event,
    NotificationRequested,
    NotificationRequestedData,
    Recipient,
    Severity,
    derive_id,
)
from services.domain.directory import Contact, Directory
from services.router.rules import SEVERITY_ORDER, Rules

# When no route matches, these are still told: an encounter is never dropped silently.
FALLBACK_ROLES = ("law", "safety")
SUPPORTED_CHANNELS = frozenset({"email", "webhook", "apprise"})


def first_channel(
    contact: Contact, channels: frozenset[str] = SUPPORTED_CHANNELS
) -> Channel | None:
    """The contact's preferred channel that this system can send on (the notifier falls back
    to the next one when it fails)."""
    return next((c.type for c in contact.channels if c.type in channels), None)


def notification_id(incident_id: str, tier: int, role: str, contact_id: str, channel: str) -> str:
    """The id of one notification: the same incident, tier, role, contact and channel always
    give the same id."""
    return derive_id(incident_id, "notification", str(tier), role, contact_id, channel)


def decide(
    event: EncounterReported,
    *,
    rules: Rules,
    directory: Directory,
    now: datetime,
    channels: frozenset[str] = SUPPORTED_CHANNELS,
) -> list[Event]:
    """`escalation.decided` plus one `notification.requested` per contact × channel.

    Event ids derive from the report's id, so deciding twice yields the same events and a
    redelivered report is dropped by the server's duplicate window.
    """
    routes = rules.matching(event.data)
    roles: list[str]
    require_ack: list[str]
    severity: Severity
    deadline: datetime | None
    if routes:
        roles = _unique(r for route in routes for r in route.notify)
        require_ack = _unique(r for route in routes for r in route.require_ack)
        severity = max((route.severity for route in routes), key=SEVERITY_ORDER.__getitem__)
        timeouts = [t for t in (route.ack_timeout for route in routes) if t is not None]
        deadline = now + min(timeouts) if timeouts else None
    else:
        roles, require_ack, severity, deadline = list(FALLBACK_ROLES), [], "high", None

    recipients, unresolved = _recipients(event, roles, directory=directory, channels=channels)
    route_names = [r.name for r in routes]
    decided = caused_by(
        EscalationDecided,
        event,
        EscalationDecidedData(
            routes=route_names,
            severity=severity,
            notify_roles=roles,
            require_ack=require_ack,
            ack_deadline=deadline,
            recipients=recipients,
            unresolved_roles=unresolved,
        ),
        id=derive_id(event.id, "escalation.decided"),
        source="router",
        now=now,
    )
    requests = [
        caused_by(
            NotificationRequested,
            event,
            NotificationRequestedData(
                notification_id=rcpt.notification_id,
                role=rcpt.role,
                contact_id=rcpt.contact_id,
                channel=rcpt.channel,
                tier=0,
                severity=severity,
                routes=route_names,
            ),
            id=derive_id(event.id, "notification.requested", rcpt.notification_id),
            source="router",
            now=now,
        )
        for rcpt in recipients
    ]
    return [decided, *requests]


def _recipients(
    event: EncounterReported,
    roles: list[str],
    *,
    directory: Directory,
    channels: frozenset[str],
) -> tuple[list[Recipient], list[str]]:
    """The recipients of the first alert, and the roles nobody can be reached for."""
    reached, unresolved = _REACH.of(directory, event.school_id, tuple(roles), channels)
    recipients = [
        Recipient(
            notification_id=notification_id(event.incident_id, 0, role, contact_id, channel),
            role=role,
            contact_id=contact_id,
            channel=channel,
        )
        for role, contact_id, channel in reached
    ]
    return recipients, list(unresolved)


# (role, contact id, channel) per person alerted, and the roles nobody can be reached for.
_Reach = tuple[tuple[tuple[str, str, Channel], ...], tuple[str, ...]]


def _reach(
    directory: Directory,
    school_id: str,
    roles: tuple[str, ...],
    channels: frozenset[str],
    contacts_for: Callable[[str, str], list[Contact]] | None = None,
) -> _Reach:
    """Who `roles` reach at a school: one alert per person on their first channel we can send
    on, under the first role named; and the roles nobody holds or nobody can be reached for.
    `contacts_for` answers as `directory.contacts_for` does (default: it)."""
    reached: list[tuple[str, str, Channel]] = []
    unresolved: list[str] = []
    seen: set[tuple[str, str]] = set()
    contacts_of = contacts_for or directory.contacts_for
    for role in roles:
        contacts = contacts_of(role, school_id)
        if not any(first_channel(c, channels) for c in contacts):
            unresolved.append(role)  # nobody holds it, or nobody we can reach
        for contact in contacts:
            channel = first_channel(contact, channels)
            if channel is None or (contact.id, channel) in seen:
                continue  # one alert per person, under the first role named
            seen.add((contact.id, channel))
            reached.append((role, contact.id, channel))
    return tuple(reached), tuple(unresolved)


class _Contacts:
    """`Directory.contacts_for` over plain dicts built once per directory: the directory's
    own look-ups go through pydantic's private attributes (a `__getattr__` each), which was
    most of a first report's `_reach` at a school (in a burst of 600 schools, every report's).
    tests/unit/test_decide_reach.py holds it to the directory's answers."""

    __slots__ = ("contacts", "roles", "schools")

    def __init__(self, directory: Directory) -> None:
        self.roles: dict[str, list[str]] = dict(directory.roles.items())
        self.schools: dict[str, dict[str, list[str]]] = {}
        for school in directory.schools:
            self.schools.setdefault(school.id, dict(school.roles.items()))
        self.contacts: dict[str, Contact] = {}
        for contact in directory.contacts:
            self.contacts.setdefault(contact.id, contact)

    def __call__(self, role: str, school_id: str) -> list[Contact]:
        """Contacts holding `role` for a school: district roles first, then the school's own."""
        ids = self.roles.get(role, ())
        school = self.schools.get(school_id)
        if school is not None and role in school:
            ids = school[role]
        return [c for c in (self.contacts.get(i) for i in ids) if c is not None]


class _ReachMemo:
    """`_reach`, worked out once per school and roles: it reads only the directory, which is
    frozen and loaded once per process, and its look-ups were a third of `decide`'s CPU (a
    report's path to its emails waits on it). Kept for the last few directories by identity
    (tests build many); a directory is held while remembered, so its id is never reused."""

    DIRECTORIES = 4
    ENTRIES = 4096  # per directory: schools x role lists the rules can name

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Directory, dict[object, _Reach], _Contacts]] = {}

    def of(
        self,
        directory: Directory,
        school_id: str,
        roles: tuple[str, ...],
        channels: frozenset[str],
    ) -> _Reach:
        held = self._memo.get(id(directory))
        if held is None or held[0] is not directory:
            if len(self._memo) >= self.DIRECTORIES:
                del self._memo[next(iter(self._memo))]
            held = self._memo[id(directory)] = (directory, {}, _Contacts(directory))
        found = held[1]
        key = (school_id, roles, channels)
        out = found.get(key)
        if out is None:
            if len(found) >= self.ENTRIES:
                found.clear()
            out = found[key] = _reach(directory, school_id, roles, channels, held[2])
        return out


_REACH = _ReachMemo()


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
