"""The `dooralert` command: the Typer app built from the command modules, and `main()`.

Command modules: services.py (the processes and `dev`), audit.py, rules.py, keys.py,
links.py.
"""

from __future__ import annotations

import sys

import typer

from services.cli import audit, keys, links, rules, services, status

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The `dooralert` command line. Each service is one process, configured by "
    "DOORALERT_* environment variables.",
)
app.command()(services.dev)
app.command()(services.provision)
app.command()(services.intake)
app.command()(services.router)
app.command()(services.notifier)
app.command()(status.status)
app.command(hidden=True)(services.outbox)
app.add_typer(audit.app, name="audit")
app.add_typer(rules.app, name="rules")
app.add_typer(keys.app, name="keys")
app.add_typer(links.app, name="links")


def main() -> None:
    """Run the command line; Ctrl-C exits with 130 instead of a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
