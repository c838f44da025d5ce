"""The board's pattern column in words: what the pattern alert saw, in the board's language,
not the rule's id."""

from __future__ import annotations

from schemas.envelope import originating
from schemas.events import PatternDetected, PatternDetectedData
from tests.service.test_board import app, client, reported, sign_in
from tests.support import utcnow

__all__ = ["app"]


async def test_a_pattern_alert_reads_as_words_in_english_and_spanish(app):
    first = await reported(app, "hamline", minutes_ago=3)
    second = await reported(app, "lincoln-park", minutes_ago=2)
    data = PatternDetectedData(
        pattern="multi-school",
        window_minutes=60,
        incident_ids=[first, second],
        school_ids=["hamline", "lincoln-park"],
        severity="critical",
        recipients=[],
    )
    pattern = originating(
        PatternDetected,
        data,
        id="pattern-1",
        source="router",
        incident_id="pattern-1",
        school_id="district",
        now=utcnow(),
    )
    await app.state.event_log.append(pattern)
    async with client(app) as board:
        await sign_in(board)
        english = await board.get("/board?lang=en")
        spanish = await board.get("/board?lang=es")
    assert english.text.count("Encounters at 2 schools within 60 minutes") == 2
    assert spanish.text.count("Encuentros en 2 escuelas en 60 minutos") == 2
    assert "multi-school" not in english.text and "multi-school" not in spanish.text
