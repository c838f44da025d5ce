"""The page saying what the free-text screen held back from a report, offering the text back
to clean and send as an update. The held-back text is in this one response only: never stored,
never logged (the page is `no-store`, like every HTML page). Its language switch posts the
text back here (`/incidents/{id}/held?lang=`): the same page in the other language, nothing
typed lost, nothing sent."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from schemas.events import new_event_id
from services.domain.screening import KINDS, Kind, looks_like
from services.intake import i18n
from services.intake.bodies import form_values
from services.intake.deps import EventLogDep, Intake, IntakeDep
from services.intake.domain.idempotency import check_submission_id
from services.intake.domain.screen import HeldBack
from services.intake.forms import check_post
from services.intake.incidents import project
from services.intake.render import PageError, error_page, language, render
from services.intake.security import Session

router = APIRouter()


def held_page(
    intake: Intake,
    request: Request,
    session: Session,
    *,
    incident_id: str,
    held: list[HeldBack] | None = None,
    text: str = "",
    again: tuple[Kind, ...] = (),
    status: int = 200,
    listed: list[HeldBack] | None = None,
    submission_id: str | None = None,
) -> HTMLResponse:
    """What was held back and why, in the staff member's language, with a prefilled update
    form; with `again`, an update that is still refused (nothing was sent). `listed`: what
    to list as held back when `text` is given as it stands (the page shown again)."""
    lang = language(request)[0]
    names = {
        "location": i18n.translate(lang, "form.location"),
        "notes": i18n.translate(lang, "screen.notes"),
        "note": i18n.translate(lang, "screen.notes"),
    }
    listed = held or listed or []
    if held:
        # The location goes back as a line of the update's notes: updates carry no location.
        text = "\n".join(
            f"{names['location']}: {h.text}" if h.field == "location" else h.text for h in held
        )
    return render(
        intake,
        request,
        "held.html",
        {
            "incident_id": incident_id,
            "page_url": intake.urls(incident_id, actor=session.actor)["page_url"],
            "held": [
                {"field": h.field, "what": looks_like(h.kinds, lang), "kinds": ",".join(h.kinds)}
                for h in listed
            ],
            "field_names": names,
            "text": text,
            "again": looks_like(again, lang) if again else "",
            "again_kinds": ",".join(again),
            # Kept while the page comes back (language, still refused): one update sent.
            "submission_id": submission_id or new_event_id(),
        },
        status=status,
        session=session,
    )


def kinds_of(value: str) -> tuple[Kind, ...]:
    """Kinds named in a hidden field ("name,phone"); any other word is dropped."""
    named = set(value.split(","))
    return tuple(k for k in KINDS if k in named)


@router.post("/incidents/{incident_id}/held", response_class=HTMLResponse)
async def held_again(
    incident_id: str, request: Request, intake: IntakeDep, event_log: EventLogDep
) -> Response:
    """The held-back page's language switch: the page again, in the language of `?lang=`,
    with the text as typed (posted, never stored) and what was held back; nothing is sent."""
    values = await form_values(request, max_bytes=intake.settings.max_report_bytes)
    session = None
    try:
        session = check_post(intake, request, values, need_school=True)
        incident = await project(event_log, incident_id)
        if incident is None:
            raise PageError(404, "error.not_found")
        # The page links to the incident: only for its own school's staff.
        if incident.school_id != session.school_id:
            raise PageError(403, "error.other_school")
    except PageError as exc:
        return error_page(intake, request, exc, session)
    held = [
        HeldBack(field, "", kinds_of(kinds))
        for field, _, kinds in (v.partition(":") for v in request_list(values, "held"))
        if field in ("location", "notes", "note") and kinds_of(kinds)
    ]
    return held_page(
        intake,
        request,
        session,
        incident_id=incident_id,
        held=None,
        text=values.get("notes", ""),
        again=kinds_of(values.get("again", "")),
        listed=held,
        submission_id=_submission(values),
    )


def request_list(values: dict[str, str], name: str) -> list[str]:
    """A repeated hidden field, sent as `name` (one) or `name.0`, `name.1`... (several)."""
    found = [values[k] for k in sorted(values) if k.startswith(f"{name}.")]
    return found or ([values[name]] if values.get(name) else [])


def _submission(values: dict[str, str]) -> str | None:
    """The form's submission id, if it is one the pages make."""
    value = values.get("submission_id") or None
    return None if check_submission_id(value) else value
