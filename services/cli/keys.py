"""`dooralert keys`: school intake keys and the audit ledger's checkpoint signing key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.support import fail

app = typer.Typer(
    no_args_is_help=True,
    help="Make school intake keys, the secret key and checkpoint signing keys.",
)


@app.command("intake")
def keys_intake() -> None:
    """Make a new school intake key; store only the printed hash in district.yaml."""
    from services.domain.directory import generate_intake_key, hash_intake_key

    key = generate_intake_key()
    typer.echo(f"key (give to the school, shown once): {key}")
    typer.echo(f"hash (put under intake_key_hashes): {hash_intake_key(key)}")


@app.command("board")
def keys_board() -> None:
    """Make a new district board key (/board); store only the printed hash in district.yaml."""
    from services.domain.directory import generate_intake_key, hash_intake_key

    key = generate_intake_key()
    typer.echo(f"key (give to district staff, shown once): {key}")
    typer.echo(f"hash (put under district.board_key_hashes): {hash_intake_key(key)}")


@app.command("secret")
def keys_secret() -> None:
    """Make a secret key for DOORALERT_SECRET_KEYS (signs links, acknowledgements, sessions)."""
    import secrets

    # 48 random bytes, URL-safe: 64 characters, well over the 32 bytes the services require.
    typer.echo(secrets.token_urlsafe(48))


@app.command("webhook-secret")
def keys_webhook_secret() -> None:
    """Print the key webhook receivers check X-Dooralert-Signature with (from the settings)."""
    from services.cli.support import load_settings
    from services.runtime.settings import InsecureSecretKey

    try:
        typer.echo(load_settings().webhook_signing_secret())
    except InsecureSecretKey as exc:
        fail(str(exc))


@app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Option(help="key name, e.g. dooralert.example/<district id>")],
    out: Annotated[Path, typer.Option(help="signing-key file to create (mode 0600)")],
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
) -> None:
    """Make an Ed25519 checkpoint signing key; print the verifier key line to share."""
    from services.audit.note import NoteError, Signer, write_signing_key

    try:
        signer = Signer.generate(name)
        write_signing_key(out, signer, overwrite=force)
    except FileExistsError:
        fail(
            f"{out} exists; pass --force to replace it (checkpoints signed with it stay "
            "verifiable only with its verifier key)"
        )
    except (NoteError, OSError) as exc:
        fail(str(exc))
    typer.echo(signer.verifier.line)
