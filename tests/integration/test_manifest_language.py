"""The web app manifest in the page's language: a Spanish page links a Spanish manifest (the
installed app's name and description), an English one the English manifest."""

from __future__ import annotations

from tests.integration.test_intake_web import sign_in, web

__all__ = ["web"]


async def test_each_language_links_its_own_manifest(web, js):
    await sign_in(web)
    spanish = await web.get("/?lang=es")
    assert '<link rel="manifest" href="/static/manifest.es.webmanifest">' in spanish.text
    english = await web.get("/?lang=en")
    assert '<link rel="manifest" href="/static/manifest.webmanifest">' in english.text
    es = (await web.get("/static/manifest.es.webmanifest")).json()
    en = (await web.get("/static/manifest.webmanifest")).json()
    assert (es["lang"], en["lang"]) == ("es", "en")
    assert es["name"] == "dooralert — agentes en la puerta"
    assert "puerta de una escuela" in es["description"]
    # The same app otherwise: where it starts, how it shows, its icons.
    same = ("start_url", "scope", "display", "icons", "theme_color")
    assert {k: es[k] for k in same} == {k: en[k] for k in same}
