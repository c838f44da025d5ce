"""Choosing the language of the staff pages; their words are in the catalogue.

The language comes from `?lang=` (then remembered in a cookie), else that cookie, else the
browser's Accept-Language, else English. The words themselves, and `label()`, are in
services/domain/i18n.py; `translate` and `label` are kept here for the pages.
"""

from __future__ import annotations

from services.domain.i18n import DEFAULT_LANGUAGE, LANGUAGES, MESSAGES, is_language, label, text

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANG_COOKIE",
    "MESSAGES",
    "choose_language",
    "from_accept_language",
    "label",
    "translate",
]

LANG_COOKIE = "dooralert_lang"


def translate(language: str, key: str, **values: object) -> str:
    """The page sentence `key` in `language` (the catalogue's `text`, language first)."""
    return text(key, language, **values)


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers most (q-values honoured)."""
    best: tuple[float, str] | None = None
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        for p in params.split(";"):
            name, _, val = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        # Earlier entries win ties, as browsers list them in order of preference.
        if q > 0 and (best is None or q > best[0]):
            best = (q - i * 1e-6, lang)
    return best[1] if best else None


def choose_language(query: str | None, cookie: str | None, accept: str | None) -> tuple[str, bool]:
    """(language, whether to remember it in the cookie)."""
    if is_language(query):
        return query, query != cookie
    if is_language(cookie):
        return cookie, False
    return from_accept_language(accept) or DEFAULT_LANGUAGE, False
