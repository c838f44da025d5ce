"""The district board on a real nats-server, the intake running as its own NATS user
(deploy/nats/server.conf): it may read what the board needs, and the board shows the open
incidents of every school, newest first, without the resolved ones."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx

from services.domain.directory import load_directory
from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.integration.test_nats_permissions import (  # noqa: F401 - fixtures
    ConfiguredNatsServer,
    Connect,
    connect,
    secured,
)
from tests.support import (
    EXAMPLES,
    HAMLINE_KEY,
    LINCOLN_KEY,
    TEST_SECRET,
    eventually,
    free_port,
    report,
    utcnow,
)

BOARD_KEY = "demo-district-board-key"


async def test_the_board_reads_open_incidents_of_two_schools_as_the_intake_user(
    secured: ConfiguredNatsServer,  # noqa: F811 - the fixtures imported above
    connect: Connect,  # noqa: F811
    tmp_path: Path,
) -> None:
    await connect("admin")  # provisions
    settings = Settings(
        config_dir=EXAMPLES,
        nats_url=secured.url_for("intake"),
        secret_key=TEST_SECRET,
        metrics_port=free_port(),
        live_poll_seconds=0.1,
    )
    app = create_app(settings, directory=load_directory(EXAMPLES))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as http,
    ):

        async def reported(key: str, school: str, minutes_ago: int) -> str:
            when = (utcnow() - timedelta(minutes=minutes_ago)).isoformat()
            made = await http.post(
                "/api/v1/encounters",
                json=report(school_id=school, occurred_at=when),
                headers={"Authorization": f"Bearer {key}"},
            )
            assert made.status_code == 202, made.text
            return str(made.json()["incident_id"])

        older = await reported(HAMLINE_KEY, "hamline", 20)
        newer = await reported(LINCOLN_KEY, "lincoln-park", 3)
        resolved = await reported(HAMLINE_KEY, "hamline", 1)
        done = await http.post(
            f"/api/v1/incidents/{resolved}/resolve",
            json={},
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
        )
        assert done.status_code == 202, done.text

        refused = await http.get("/board")
        assert 'name="board_key"' in refused.text and older not in refused.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', refused.text)
        assert csrf is not None
        signed = await http.post(
            "/board/signin", data={"csrf_token": csrf[1], "board_key": BOARD_KEY}
        )
        assert signed.status_code == 303

        async def listed() -> list[str] | None:
            page = await http.get("/board")
            assert page.status_code == 200
            found = re.findall(r'data-incident="([^"]+)"', page.text)
            return found if found == [newer, older] else None

        assert await eventually(listed, timeout=5) == [newer, older]
        page = await http.get("/board")
        assert resolved not in page.text and "board.unreachable" not in page.text
        assert "cannot be read" not in page.text  # the intake user may tail the log
