"""View tokens in alert links: each opens one incident's status page and nothing else."""

from __future__ import annotations

import pytest

from services.domain.tokens import check_view_token, view_token

SECRET = "test-secret"


def test_a_view_token_opens_its_incident() -> None:
    assert check_view_token(SECRET, "inc-1", view_token(SECRET, "inc-1"))


def test_a_view_token_does_not_open_another_incident() -> None:
    assert not check_view_token(SECRET, "inc-2", view_token(SECRET, "inc-1"))


def test_a_view_token_made_with_another_secret_is_refused() -> None:
    assert not check_view_token(SECRET, "inc-1", view_token("other-secret", "inc-1"))


@pytest.mark.parametrize(
    "token",
    [None, "", " ", "x", "A" * 24, "ü" * 24, "\x00", "токен", "💥"],
)
def test_missing_malformed_or_non_ascii_tokens_are_refused_not_an_error(token: str | None) -> None:
    assert check_view_token(SECRET, "inc-1", token) is False


def test_a_truncated_or_extended_token_is_refused() -> None:
    token = view_token(SECRET, "inc-1")
    assert not check_view_token(SECRET, "inc-1", token[:-1])
    assert not check_view_token(SECRET, "inc-1", token + "A")


def test_view_tokens_are_stable_and_safe_in_a_url() -> None:
    token = view_token(SECRET, "inc-1")
    assert token == view_token(SECRET, "inc-1")
    assert len(token) == 24
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
