"""Who may look at the district board (pure): a board sign-in, and a board link per contact.

Both are signed by the keyring under the `board` purpose (services/domain/tokens.py), so
neither a staff session nor a status link opens the board, and they tell themselves apart by
their first item:

- `["key", <board key id>, nonce, expires]` — a sign-in with a district board key
  (`district.board_key_hashes`); it ends when the key leaves district.yaml.
- `["contact", <contact id>, nonce, expires]` — a sign-in from a contact's board link; it
  ends when the contact no longer holds a district role (law, safety, leadership).
- `["link", <contact id>, issued, expires]` — the link itself (`dooralert links board`),
  exchanged for a sign-in cookie when opened, so it does not stay in the address bar.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from services.domain.directory import Directory
from services.domain.tokens import Keyring, TokenError, TokenExpired

PassKind = Literal["key", "contact"]


def key_id(key_hash: str) -> str:
    """The pseudonymous id of a stored key hash (as the intake's sessions name keys)."""
    return key_hash.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class BoardPass:
    """A board sign-in: by a board key (its id) or a contact's link; a nonce; its end."""

    kind: PassKind
    ident: str
    nonce: str
    expires_at: int  # unix seconds

    @property
    def recipient(self) -> str:
        """Who status links made for this viewer name (traced, revocable)."""
        return f"board-{self.kind}:{self.ident}"


def new_pass(kind: PassKind, ident: str, *, now: float, lifetime: float) -> BoardPass:
    """A fresh sign-in of `kind` for `ident`."""
    return BoardPass(kind, ident, secrets.token_urlsafe(12), int(now + lifetime))


def pass_cookie(keys: Keyring, board_pass: BoardPass) -> str:
    """The sign-in as a signed cookie value."""
    p = board_pass
    return keys.sign("board", [p.kind, p.ident, p.nonce, p.expires_at])


def in_district_role(directory: Directory, contact_id: str) -> bool:
    """Whether the contact holds a district role (law, safety, leadership)."""
    return any(contact_id in members for members in directory.roles.values())


def read_pass(
    keys: Keyring, cookie: str | None, *, directory: Directory, now: float
) -> tuple[BoardPass | None, bool]:
    """The sign-in in a cookie, and whether a genuine one had ended (expired; its key left
    district.yaml; its contact left the district roles). Forged or absent: (None, False)."""
    try:
        kind, ident, nonce, expires = keys.unsign("board", cookie)
        board_pass = BoardPass(kind, str(ident), str(nonce), int(expires))
    except (TokenError, ValueError, TypeError):
        return None, False
    if kind == "key":
        valid = any(key_id(h) == ident for h in directory.district.board_key_hashes)
    elif kind == "contact":
        valid = in_district_role(directory, board_pass.ident)
    else:
        return None, False  # a link, or something else signed for the board
    if now >= board_pass.expires_at or not valid:
        return None, True
    return board_pass, False


def link_token(keys: Keyring, contact_id: str, *, issued_at: int, expires_at: int) -> str:
    """A contact's board link token."""
    return keys.sign("board", ["link", contact_id, issued_at, expires_at])


def read_link(keys: Keyring, token: str | None, *, directory: Directory, now: float) -> str:
    """The contact a board link was made for; `TokenExpired` when past its end, `TokenError`
    when forged, not a link, or for someone no longer in a district role."""
    try:
        kind, contact_id, _issued, expires = keys.unsign("board", token)
        contact_id, expires = str(contact_id), int(expires)
    except (ValueError, TypeError):
        raise TokenError("this link is malformed") from None
    if kind != "link":
        raise TokenError("this is not a board link")
    if now >= expires:
        raise TokenExpired("this board link has expired")
    if not in_district_role(directory, contact_id):
        raise TokenError("this board link's holder no longer has a district role")
    return contact_id
