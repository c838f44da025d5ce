"""The after-action report as one self-contained printable HTML page (templates/report.html)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.audit.report.formatting import duration, names, outcome, time
from services.audit.report.model import AfterActionReport

TEMPLATES = Path(__file__).parent.parent / "templates"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = time
    env.filters["duration"] = duration
    env.filters["names"] = names
    env.filters["outcome"] = outcome
    return env


def render_html(r: AfterActionReport) -> str:
    """One printable page, autoescaped, with no external assets."""
    return _environment().get_template("report.html").render(r=r)
