"""The page saying what the free-text screen held back from a report, offering the text back
to clean and send as an update. The held-back text is in this one response only: never stored,
never logged (the page is `no-store`, like every HTML page)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from services.domain.screening import Kind, looks_like
from services.intake import i18n
from services.intake.deps import Intake
from services.intake.domain.screen import HeldBack
from services.intake.render import language, render
from services.intake.security import Session


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
) -> HTMLResponse:
    """What was held back and why, in the staff member's language, with a prefilled update
    form; with `again`, an update that is still refused (nothing was sent)."""
    lang = language(request)[0]
    names = {
        "location": i18n.translate(lang, "form.location"),
        "notes": i18n.translate(lang, "screen.notes"),
        "note": i18n.translate(lang, "screen.notes"),
    }
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
            "held": [{"field": h.field, "what": looks_like(h.kinds, lang)} for h in held or []],
            "field_names": names,
            "text": text,
            "again": looks_like(again, lang) if again else "",
        },
        status=status,
        session=session,
    )
