"""The staff forms' checks and conversions: same-origin and CSRF checks on a POST, the
pages' rate limit, and the report form's fields as the API's JSON report (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import BaseModel

from services.intake import i18n
from services.intake.deps import Intake, client_of, read_session
from services.intake.errors import ReportInvalid
from services.intake.render import PageError, language
from services.intake.security import CSRF_COOKIE, CSRF_FIELD, Session, csrf_valid


def same_origin(intake: Intake, request: Request) -> bool:
    """Whether a POST comes from our own pages (by Sec-Fetch-Site and Origin)."""
    # Browsers mark every cross-site POST (Sec-Fetch-Site, Origin); refuse it outright.
    # With Referrer-Policy no-referrer, Chromium sends `Origin: null` on our own forms, so
    # "null" proves nothing either way: the CSRF token decides.
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True
    host = urlsplit(origin).netloc
    return host in (request.headers.get("host"), urlsplit(intake.settings.base_url).netloc)


def csrf_ok(
    intake: Intake, request: Request, session: Session | None, form_token: str | None
) -> bool:
    """Same origin, and the form's CSRF token matches the cookie's and this session."""
    return same_origin(intake, request) and csrf_valid(
        intake.keys, session, form_token, request.cookies.get(CSRF_COOKIE)
    )


def check_post(
    intake: Intake, request: Request, values: dict[str, str], *, need_school: bool
) -> Session:
    """The session of a form POST, its CSRF token checked; or a PageError."""
    current = read_session(intake, request)
    if current.expired:
        raise PageError(401, "signin.expired")
    session = current.session
    if not csrf_ok(intake, request, session, values.get(CSRF_FIELD)):
        raise PageError(403, "error.csrf")
    assert session is not None
    if need_school and session.school_id is None:
        raise PageError(401, "signin.expired")
    return session


def page_limit(intake: Intake, request: Request, school_id: str) -> None:
    """A 429 PageError (how long to wait, whom to call) when a rate limit is reached."""
    wait = intake.limit(school_id=school_id, client=client_of(request))
    if wait:
        raise PageError(
            429,
            "error.rate",
            seconds=int(wait) + 1,
            phone=intake.phone or i18n.translate(language(request)[0], "form.law_department"),
        )


# The radio tile that means "the door is typed in the text field".
OTHER_DOOR = "_other"
# Form fields that steer the page and are no part of the report.
FORM_ONLY = frozenset(
    {CSRF_FIELD, "submission_id", "occurred_time", "intake_key", "door", "switch_lang"}
)
CHOICES = frozenset({"agency_stated", "document", "signed_by_judge", "purpose", "entry"})


def form_defaults(tz: tzinfo, *, now: datetime) -> dict[str, str]:
    """A fresh report form's values: safe answers so that the door alone can be sent.

    "Unknown"/"not stated" where the report has such a value. Two fields have none: one
    agent (the least that makes a report) and credentials not shown (the cautious reading:
    nothing was verified); both can be corrected on the incident page."""
    return {
        "agency_stated": "unknown",
        "agent_count": "1",
        "credentials_shown": "false",
        "document": "unknown",
        "signed_by_judge": "unsure",
        "purpose": "unspecified",
        "entry": "kept_outside",
        "occurred_time": now.astimezone(tz).strftime("%H:%M"),
    }


def field_reason(reason: str, lang: str) -> str:
    """A field error's reason as shown on the form."""
    return i18n.translate(lang, "reason.required") if reason == "required" else reason


def field_message(field: str, values: dict[str, str], lang: str) -> str:
    """A form field's error in plain words, decided from the value sent (not the validator's
    English), so that it reads the same in every language."""
    value = location_of(values) if field == "location" else values.get(field, "")
    if field == "location":
        key = "location" if not value.strip() else "location_long"
        if value.strip() and len(value.strip()) <= 120:
            key = "location_line"
    elif field == "notes":
        key = "notes_long" if len(normalise_notes(value).strip()) > 500 else "notes_control"
    elif field in CHOICES:
        key = "choice"
    elif field in ("agent_count", "credentials_shown", "occurred_time", "occurred_at"):
        key = field
    else:
        key = "other"
    return i18n.translate(lang, f"form.err.{key}")


def normalise_notes(text: str) -> str:
    """Line breaks as one character each: a browser sends CRLF, its counter sees LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def location_of(values: dict[str, str]) -> str:
    """The door: the tile chosen, else (no tile, or "other") the text typed."""
    door = values.get("door", "")
    if door and door != OTHER_DOOR:
        return door
    return values.get("location", "")


def report_from_form(
    values: dict[str, str], *, school_id: str, tz: tzinfo, now: datetime
) -> dict[str, Any]:
    """The form's fields as the API's JSON report (pure). The time is local to the district."""
    raw: dict[str, Any] = {k: v for k, v in values.items() if k not in FORM_ONLY}
    raw["school_id"] = school_id
    raw["location"] = location_of(values)
    raw["notes"] = normalise_notes(raw.get("notes", ""))
    if raw["notes"] == "":
        raw.pop("notes", None)
    # The JSON API takes no strings for numbers or booleans: convert the form's words here.
    count = raw.pop("agent_count", "").strip()
    if count:
        # Short: int() of thousands of digits raises (and no one has 10**9 agents).
        digits = count.isascii() and count.isdigit() and len(count) <= 9
        raw["agent_count"] = int(count) if digits else count
    shown = raw.pop("credentials_shown", "")
    if shown:
        raw["credentials_shown"] = {"true": True, "false": False}.get(shown, shown)
    clock = values.get("occurred_time", "").strip()
    if clock:
        try:
            hhmm = time.fromisoformat(clock)
        except ValueError:
            raise ReportInvalid([{"field": "occurred_time", "reason": "use HH:MM"}]) from None
        local_now = now.astimezone(tz)
        at = datetime.combine(local_now.date(), hhmm, tzinfo=tz)
        if at > local_now + timedelta(minutes=5):
            at -= timedelta(days=1)  # 23:50 entered at 00:05 means yesterday
        raw["occurred_at"] = at.astimezone(UTC).isoformat()
    return raw


# The report fields the incident page's update form can set (all but the door and the time).
UPDATE_FIELDS = (
    "agency_stated",
    "agent_count",
    "credentials_shown",
    "document",
    "signed_by_judge",
    "purpose",
    "entry",
)


def follow_up_from_form(values: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """A follow-up button's form as (the API's update body, whether it resolves)."""
    action = values.get("action", "")
    if action == "resolve":
        return {}, True
    if action == "agents_left":
        return {"entry": "left"}, False
    if action == "agents_back":
        # Back at the door after leaving: kept outside again (the details form corrects it).
        return {"entry": "kept_outside"}, False
    if action == "notes":
        # The held-back page's "send as an update", its text cleaned by the staff member.
        return {"notes": normalise_notes(values.get("notes", "")).strip()}, False
    if action == "document":
        return _details(values), False
    raise ReportInvalid([{"field": "action", "reason": "unknown action"}])


def _details(values: dict[str, str]) -> dict[str, Any]:
    """The details form's fields as the update body (numbers and yes/no converted)."""
    change: dict[str, Any] = {k: values[k] for k in UPDATE_FIELDS if values.get(k)}
    if "agent_count" in change:
        count = change["agent_count"].strip()
        digits = count.isascii() and count.isdigit() and len(count) <= 9
        change["agent_count"] = int(count) if digits else count
    if "credentials_shown" in change:
        shown = change["credentials_shown"]
        change["credentials_shown"] = {"true": True, "false": False}.get(shown, shown)
    return change


def only_changed(change: dict[str, Any], report: BaseModel | None) -> dict[str, Any]:
    """The details form's update less what `report` (the incident's current one) already
    says: the form sends every field, the update names only what changed."""
    if report is None:
        return change
    current = report.model_dump(mode="json")
    return {k: v for k, v in change.items() if current.get(k) != v}


# The report form's own fields. When the session has gone (expired, signed out, cookies
# cleared) they ride along the sign-in page as hidden `report.<name>` fields, to be checked
# again and sent once the key is given: nothing typed is lost, and nothing is stored.
REPORT_FIELDS = (
    "door",
    "location",
    "agency_stated",
    "agent_count",
    "credentials_shown",
    "occurred_time",
    "document",
    "signed_by_judge",
    "purpose",
    "entry",
    "notes",
    "submission_id",
    "switch_lang",
)
CARRIED = "report."


def carry(values: dict[str, str]) -> dict[str, str]:
    """The report form's entries as the sign-in page's hidden fields."""
    return {CARRIED + k: values[k] for k in REPORT_FIELDS if k in values}


def carried(values: dict[str, str]) -> dict[str, str]:
    """The report entries a sign-in form carries (empty: a plain sign-in)."""
    names = set(REPORT_FIELDS)
    return {
        k.removeprefix(CARRIED): v
        for k, v in values.items()
        if k.startswith(CARRIED) and k.removeprefix(CARRIED) in names
    }
