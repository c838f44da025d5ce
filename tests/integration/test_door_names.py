"""Door names per language (district.yaml `doors:` entries like `{en: Gym door, es: Puerta
del gimnasio}`) on a real nats-server: the Spanish form offers the Spanish name, the report
stores the English one whatever the form's language (the log stays language-independent),
and the incident page shows it in the reader's language."""

from __future__ import annotations

import re

from tests.integration.test_intake_fast_path import fresh_form, reported
from tests.integration.test_intake_web import sign_in, web

__all__ = ["web"]

TILE = re.compile(r'name="door" id="door-\d+" value="([^"]+)"[^>]*> <span>([^<]+)</span>')


async def test_spanish_form_offers_spanish_door_names_and_stores_the_english_one(web, js):
    await sign_in(web)
    spanish = dict(TILE.findall((await web.get("/?lang=es")).text))
    assert spanish["Gym door"] == "Puerta del gimnasio"
    assert spanish["Back gate"] == "Portón trasero"
    assert spanish["Front entrance"] == "Front entrance"  # no Spanish name given: as written
    english = dict(TILE.findall((await web.get("/?lang=en")).text))
    assert english["Gym door"] == "Gym door" and english["Back gate"] == "Back gate"

    body = await fresh_form(web, lang="es")
    sent = await web.post("/report", data={**body, "door": "Gym door"})
    assert sent.status_code == 303, sent.text
    [event] = await reported(js)
    assert event.data.location == "Gym door"
    page = sent.headers["location"]
    where = re.compile(r'scope="row">[^<]+</th><td>([^<]+)</td>')
    es = (await web.get(page + "&lang=es" if "?" in page else page + "?lang=es")).text
    assert "Puerta del gimnasio" in where.findall(es)
    en = (await web.get(page + "&lang=en" if "?" in page else page + "?lang=en")).text
    assert "Gym door" in where.findall(en) and "Puerta del gimnasio" not in en
