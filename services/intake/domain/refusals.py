"""A decision's "no": what was refused, typed by kind; the HTTP status follows from the kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RefusalKind = Literal[
    "bad_token",  # an ack link forged, altered, malformed or expired
    "other_incident",  # an ack token posted to another incident's URL
    "not_in_log",  # the incident a token names is not in the log
    "already_acknowledged",  # the link has been used
    "resolved",  # nothing more to record: the incident is resolved
    "open",  # no all-clear to withdraw: the incident is open
    "invalid",  # the request's data fails validation (`fields` says where)
    "key_reused",  # an Idempotency-Key already used for a different report
]

STATUS: dict[RefusalKind, int] = {
    "bad_token": 400,
    "other_incident": 400,
    "not_in_log": 404,
    "already_acknowledged": 409,
    "resolved": 409,
    "open": 409,
    "invalid": 422,
    "key_reused": 409,
}


@dataclass(frozen=True)
class Refused:
    """Nothing is recorded: the kind of refusal and the words for whoever asked (`message`
    for the JSON API; a page says `key` from the catalogue instead)."""

    kind: RefusalKind
    message: str
    fields: tuple[dict[str, str], ...] = ()

    @property
    def status(self) -> int:
        """The HTTP status this refusal answers with."""
        return STATUS[self.kind]

    @property
    def key(self) -> str:
        """The catalogue key that says it in plain words, in any language (`message` is the
        API's English)."""
        return f"refused.{self.kind}"


def invalid(fields: list[dict[str, str]]) -> Refused:
    """An `invalid` refusal naming each bad field and why."""
    message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
    return Refused("invalid", message, tuple(fields))
