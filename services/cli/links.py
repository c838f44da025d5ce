"""`dooralert links`: withdraw the status links sent for an incident."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.support import fail, load_settings, operate

if TYPE_CHECKING:
    from nats.js import JetStreamContext

app = typer.Typer(no_args_is_help=True, help="Withdraw status links sent in alerts.")

RECIPIENT = re.compile(r"^[a-z0-9_-]+(:[a-z0-9_-]+)?$")


@app.command("revoke")
def links_revoke(
    incident: Annotated[str, typer.Option(help="the incident whose status links stop working")],
    contact: Annotated[
        str | None,
        typer.Option(
            help="only this recipient's links: a contact id, or a staff key's actor "
            "(intake-key:<id>); default: every status link of the incident"
        ),
    ] = None,
) -> None:
    """Revoke status links issued until now (appends `links.revoked`; later alerts carry
    new links). Needs a NATS user allowed to publish it (admin in deploy/nats/server.conf)."""
    from schemas.report import TOKEN_PATTERN

    if not re.fullmatch(TOKEN_PATTERN, incident):
        fail(f"--incident: {incident!r} is not an incident id")
    if contact is not None and not RECIPIENT.fullmatch(contact):
        fail(f"--contact: {contact!r} is not a contact id or intake-key:<id>")

    async def work(js: JetStreamContext) -> str:
        return await _revoke(js, incident, contact)

    operate("dooralert-links", work)


async def _revoke(js: JetStreamContext, incident: str, recipient: str | None) -> str:
    from schemas.envelope import originating
    from schemas.events import LinksRevoked, LinksRevokedData, new_event_id
    from services.eventlog import publish_event, read_incident

    events = await read_incident(js, incident)
    if not events:
        raise LookupError(f"no incident {incident!r} in the log")
    event = originating(
        LinksRevoked,
        LinksRevokedData(recipient=recipient),
        id=new_event_id(),
        source="operator",
        incident_id=incident,
        school_id=events[0].school_id,
        now=datetime.now(UTC),
        actor="operator",
    )
    await publish_event(js, event)
    whose = f"{recipient}'s status links" if recipient else "every status link"
    until = f"{event.occurred_at:%Y-%m-%d %H:%M:%S} UTC"
    return f"revoked {whose} for incident {incident} issued until {until}"


@app.command("board")
def links_board(
    contact: Annotated[str, typer.Option(help="a contact holding a district role (law, ...)")],
    days: Annotated[int, typer.Option(min=1, max=366, help="how long the link works")] = 30,
) -> None:
    """Print a district board link for one contact (law, safety, leadership): it signs them
    in to /board without the board key. It ends after --days, or when the contact leaves the
    district roles in district.yaml (or DOORALERT_SECRET_KEYS no longer holds its key)."""
    import time

    from services.domain.board_pass import in_district_role, link_token
    from services.domain.directory import load_directory
    from services.domain.tokens import Keyring
    from services.runtime.config import ConfigError
    from services.runtime.settings import InsecureSecretKey

    settings = load_settings()
    try:
        directory = load_directory(settings.config_dir)
        keys = Keyring.of(settings.signing_keys())
    except (ConfigError, InsecureSecretKey) as exc:
        fail(str(exc))
    if not in_district_role(directory, contact):
        fail(f"--contact: {contact!r} holds no district role (law, safety, leadership)")
    now = int(time.time())
    token = link_token(keys, contact, issued_at=now, expires_at=now + days * 86400)
    typer.echo(f"{settings.base_url}/board?token={token}")
