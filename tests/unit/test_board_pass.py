"""Who may look at the district board: sign-ins and contacts' board links (pure)."""

from __future__ import annotations

import pytest

from services.domain.board_pass import link_token, new_pass, pass_cookie, read_link, read_pass
from services.domain.directory import load_directory
from services.domain.tokens import Keyring, TokenError, TokenExpired
from tests.support import EXAMPLES

KEYS = Keyring.of(["board-pass-test-secret-0123456789-abcdefghijkl"])
DIRECTORY = load_directory(EXAMPLES)
BOARD_KEY_ID = DIRECTORY.district.board_key_hashes[0].removeprefix("sha256:")[:12]
NOW = 1_800_000_000.0


def test_a_board_key_sign_in_ends_when_the_key_leaves_district_yaml() -> None:
    cookie = pass_cookie(KEYS, new_pass("key", BOARD_KEY_ID, now=NOW, lifetime=3600))
    assert read_pass(KEYS, cookie, directory=DIRECTORY, now=NOW)[0] is not None
    district = DIRECTORY.district.model_copy(update={"board_key_hashes": []})
    rotated = DIRECTORY.model_copy(update={"district": district})
    assert read_pass(KEYS, cookie, directory=rotated, now=NOW) == (None, True)
    assert read_pass(KEYS, cookie, directory=DIRECTORY, now=NOW + 3600) == (None, True)


def test_a_contacts_sign_in_ends_when_they_leave_the_district_roles() -> None:
    cookie = pass_cookie(KEYS, new_pass("contact", "law-dept", now=NOW, lifetime=3600))
    assert read_pass(KEYS, cookie, directory=DIRECTORY, now=NOW)[0] is not None
    roles = {**DIRECTORY.roles, "law": ["law-counsel"]}
    moved = DIRECTORY.model_copy(update={"roles": roles})
    assert read_pass(KEYS, cookie, directory=moved, now=NOW) == (None, True)


def test_a_board_link_is_not_a_sign_in_and_a_sign_in_is_not_a_link() -> None:
    link = link_token(KEYS, "safety-office", issued_at=int(NOW), expires_at=int(NOW) + 60)
    assert read_pass(KEYS, link, directory=DIRECTORY, now=NOW) == (None, False)
    assert read_link(KEYS, link, directory=DIRECTORY, now=NOW) == "safety-office"
    cookie = pass_cookie(KEYS, new_pass("contact", "law-dept", now=NOW, lifetime=60))
    with pytest.raises(TokenError):
        read_link(KEYS, cookie, directory=DIRECTORY, now=NOW)


def test_a_board_link_refuses_when_expired_or_made_for_a_school_contact() -> None:
    link = link_token(KEYS, "law-dept", issued_at=int(NOW), expires_at=int(NOW) + 60)
    with pytest.raises(TokenExpired):
        read_link(KEYS, link, directory=DIRECTORY, now=NOW + 61)
    school = link_token(KEYS, "principal-hamline", issued_at=int(NOW), expires_at=int(NOW) + 60)
    with pytest.raises(TokenError):
        read_link(KEYS, school, directory=DIRECTORY, now=NOW)
    other = Keyring.of(["another-districts-secret-0123456789-abcdefgh"])
    with pytest.raises(TokenError):
        read_link(other, link, directory=DIRECTORY, now=NOW)
