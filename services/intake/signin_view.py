"""The sign-in page, and the report it may carry: a report form sent after its session has
gone (expired, signed out, cookies cleared) comes back as this page, its entries in hidden
`report.<name>` fields (forms.carry) and listed in words, to be sent once the key is given
(pages.py). Nothing is stored meanwhile: the browser holds the report, the server checks it
again on arrival like any form."""

from __future__ import annotations

from functools import partial

from fastapi import Request
from fastapi.responses import HTMLResponse

from services.domain.tokens import TokenError
from services.intake import i18n
from services.intake.deps import Intake
from services.intake.forms import REPORT_FIELDS, location_of
from services.intake.render import PageError, language, render
from services.intake.security import SESSION_COOKIE

# Room on the sign-in page for a report carried along (its fields, as the form sent them).
CARRY_BYTES = 4096


def signin_page(
    intake: Intake,
    request: Request,
    *,
    status: int = 200,
    error: PageError | str | None = None,
    school_id: str | None = None,
    report: dict[str, str] | None = None,
) -> HTMLResponse:
    """The sign-in form (staff give their school's intake key once per device). With
    `report`, the report form's entries ride along: sent (or, from the language button,
    shown again) as soon as the key is given."""
    lang = language(request)[0]
    if isinstance(error, str):
        error = PageError(status, error)
    # Only the report's own fields ride along (never the old CSRF token, nor stray fields).
    report = {k: report[k] for k in REPORT_FIELDS if k in report} if report else None
    resp = render(
        intake,
        request,
        "signin.html",
        {
            "schools": intake.directory.schools,
            "error": error,
            "school_id": school_id,
            "days": int(intake.settings.session_lifetime_seconds // 86400) or 1,
            "report": report or {},
            "sending": bool(report) and not (report or {}).get("switch_lang"),
            "kept": kept_summary(report, lang) if report else [],
            # Shown after a POST too (a wrong key): the language link opens the form's address,
            # never the POST-only one.
            "switch_url": f"/?lang={i18n.translate(lang, 'switch_lang')}",
        },
        status=status,
    )
    if error is not None and error.status == 429 and "seconds" in error.values:
        resp.headers["Retry-After"] = str(error.values["seconds"])
    return resp


def kept_summary(values: dict[str, str], lang: str) -> list[tuple[str, str]]:
    """The carried report in words, as the sign-in page lists it: the person sees what the
    key will send (and a forged one would show itself)."""
    t = partial(i18n.translate, lang)
    rows = [(t("incident.where"), location_of(values))]
    for field, key in (
        ("agency_stated", "form.agency"),
        ("agent_count", "form.count"),
        ("document", "form.document"),
        ("signed_by_judge", "form.signed"),
        ("purpose", "form.purpose"),
        ("entry", "form.entry"),
    ):
        if values.get(field):
            rows.append((t(key), i18n.label(values[field], lang)))
    shown = {"true": t("form.yes"), "false": t("form.no")}.get(values.get("credentials_shown", ""))
    if shown:
        rows.append((t("form.credentials"), shown))
    if values.get("notes", "").strip():
        rows.append((t("incident.notes"), values["notes"]))
    return rows


def last_school(intake: Intake, request: Request) -> str | None:
    """The school of the session cookie still in the browser (expired or signed out), for
    the sign-in page to preselect; None without one."""
    try:
        school_id = intake.keys.unsign("session", request.cookies.get(SESSION_COOKIE))[1]
    except (TokenError, ValueError, TypeError, IndexError, KeyError):
        return None
    return school_id if isinstance(school_id, str) else None
