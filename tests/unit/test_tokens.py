"""Signed tokens (services/domain/tokens.py): a status link opens one incident for one
recipient until it expires; keys rotate; a token made for one purpose is refused for another."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from services.domain.tokens import (
    PURPOSES,
    AckClaim,
    Keyring,
    TokenError,
    TokenExpired,
    ViewClaim,
    ack_token,
    read_ack_token,
    read_view_token,
    view_token,
)

OLD = "the-old-key-that-signed-last-month-0123456789"
NEW = "the-new-key-that-signs-from-today-0123456789"
NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)
T = int(NOW.timestamp())
CLAIM = ViewClaim("inc-1", "law-dept", "n-1", notes=True, issued_at=T, expires_at=T + 7 * 86400)


def test_a_status_link_opens_its_incident_and_names_its_recipient() -> None:
    keys = Keyring.of([NEW])
    assert read_view_token(keys, view_token(keys, CLAIM), incident_id="inc-1", now=NOW) == CLAIM


def test_a_status_link_does_not_open_another_incident() -> None:
    keys = Keyring.of([NEW])
    with pytest.raises(TokenError, match="another incident"):
        read_view_token(keys, view_token(keys, CLAIM), incident_id="inc-2", now=NOW)


def test_a_status_link_expires() -> None:
    keys = Keyring.of([NEW])
    token = view_token(keys, CLAIM)
    assert read_view_token(keys, token, incident_id="inc-1", now=NOW + timedelta(days=6))
    with pytest.raises(TokenExpired):
        read_view_token(keys, token, incident_id="inc-1", now=NOW + timedelta(days=7, seconds=1))


def test_after_rotation_a_token_signed_with_the_old_key_still_verifies() -> None:
    before = view_token(Keyring.of([OLD]), CLAIM)
    rotated = Keyring.of([NEW, OLD])
    assert read_view_token(rotated, before, incident_id="inc-1", now=NOW) == CLAIM
    # ... and new tokens are signed with the first key: valid once the old one is removed.
    after = view_token(rotated, CLAIM)
    assert read_view_token(Keyring.of([NEW]), after, incident_id="inc-1", now=NOW) == CLAIM


def test_a_token_signed_with_a_removed_key_no_longer_verifies() -> None:
    before = view_token(Keyring.of([OLD]), CLAIM)
    with pytest.raises(TokenError, match="not issued by this district"):
        read_view_token(Keyring.of([NEW]), before, incident_id="inc-1", now=NOW)


@pytest.mark.parametrize("made_for", PURPOSES)
@pytest.mark.parametrize("used_as", PURPOSES)
def test_a_token_for_one_purpose_is_refused_for_another(made_for: str, used_as: str) -> None:
    keys = Keyring.of([NEW])
    token = keys.sign(made_for, ["inc-1", "x"])  # type: ignore[arg-type]  # every purpose
    if made_for == used_as:
        assert keys.unsign(used_as, token) == ["inc-1", "x"]  # type: ignore[arg-type]
    else:
        with pytest.raises(TokenError):
            keys.unsign(used_as, token)  # type: ignore[arg-type]


def test_an_ack_token_does_not_open_a_status_page_nor_a_status_token_acknowledge() -> None:
    keys = Keyring.of([NEW])
    ack = ack_token(keys, AckClaim("inc-1", "hamline", "law", "law-dept", "n-1", T + 3600))
    with pytest.raises(TokenError):
        read_view_token(keys, ack, incident_id="inc-1", now=NOW)
    with pytest.raises(TokenError):
        read_ack_token(keys, view_token(keys, CLAIM), now=NOW)


@pytest.mark.parametrize(
    "token",
    [None, "", " ", "x", "A" * 24, "ü" * 24, "\x00", "токен", "💥", "a.b", "W10.AAAA"],
)
def test_missing_malformed_or_non_ascii_tokens_are_refused_not_an_error(token: str | None) -> None:
    with pytest.raises(TokenError):
        read_view_token(Keyring.of([NEW]), token, incident_id="inc-1", now=NOW)


def test_a_truncated_or_extended_token_is_refused() -> None:
    keys = Keyring.of([NEW])
    token = view_token(keys, CLAIM)
    for bad in (token[:-1], token + "A"):
        with pytest.raises(TokenError):
            read_view_token(keys, bad, incident_id="inc-1", now=NOW)


def test_tokens_are_safe_in_a_url_and_the_keyring_never_shows_its_keys() -> None:
    keys = Keyring.of([NEW])
    token = view_token(keys, CLAIM)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert set(token) <= alphabet
    assert NEW not in repr(keys)


@pytest.mark.parametrize(
    "payload",
    [
        ["inc-1", "law-dept", "n-1", 1, T, T + 86400],  # a status link: not compressed
        ["inc-1", "x" * 300, "x" * 300],  # long and repetitive: zlib-compressed (".")
        ["école señal 漢字", 1.5, None, {"a": [1, 2]}],  # non-ASCII kept as UTF-8
    ],
)
def test_the_cached_signer_makes_the_tokens_itsdangerous_makes(payload: object) -> None:
    from itsdangerous import URLSafeSerializer

    for purpose in PURPOSES:
        reference = URLSafeSerializer(
            [OLD, NEW],  # itsdangerous signs with its last key: the keyring's first
            salt=f"dooralert.{purpose}",
            signer_kwargs={"digest_method": hashlib.sha256},
        )
        token = Keyring.of([NEW, OLD]).sign(purpose, payload)
        assert token == reference.dumps(payload)
        assert reference.loads(token) == payload
    assert Keyring.of([NEW]).sign("view", payload).startswith(".") == (len(str(payload)) > 500)
