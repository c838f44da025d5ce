"""`dooralert audit report`: the after-action report for one incident (pure).

Built from the incident's events in log order (each with its stream sequence), the checkpoint
notes from DOORALERT_CHECKPOINTS and contact names looked up in district.yaml when the report
is rendered (build.py). Names appear only in this report, never in the log; addresses appear
nowhere. Rendered as Markdown (markdown.py) or as one self-contained printable HTML page
(html.py).
"""

from services.audit.report.build import build_report, find_anchor
from services.audit.report.html import render_html
from services.audit.report.markdown import md, render_markdown
from services.audit.report.model import AfterActionReport, Anchor

__all__ = [
    "AfterActionReport",
    "Anchor",
    "build_report",
    "find_anchor",
    "md",
    "render_html",
    "render_markdown",
]
