"""Building an alert email (pure): the report and recipient in, a MIME message out.

Templates live under `templates/<language>/`: `subject.txt`, and a plain-text and an
autoescaped HTML body per variant. Which variant a role gets is decided here, in `variant_for`.
`check_templates` renders every language × variant at start-up, so a missing or broken
template stops the notifier before any alert depends on it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)

from schemas.events import EncounterReported, NotificationRequested, PatternDetected
from schemas.report import EncounterReport
from services.notifier.i18n import LANGUAGES, ack_text, kind_text, label, protocol, role_name

TEMPLATES = Path(__file__).parent / "templates"
KINDS = ("txt", "html")
# The family liaison speaks with families: their alert leaves out how many agents came and
# whether they showed credentials (details that invite speculation, not action). Every other
# role gets the full alert.
VARIANTS: dict[str, str] = {"family_liaison": "liaison"}
DEFAULT_VARIANT = "alert"


class TemplateCheckError(Exception):
    """A notifier template is missing or does not render; the message names which and why."""


def variant_for(role: str) -> str:
    return VARIANTS.get(role, DEFAULT_VARIANT)


def header_safe(text: str, limit: int = 200) -> str:
    """One line, no control characters: nothing a field holds can add a header."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:limit]


@dataclass(frozen=True)
class AlertContext:
    district_name: str
    school_name: str
    timezone: str
    recipient_name: str
    status_url: str
    emergency_phone: str | None
    # The door in the recipient's language when the report names one of the school's doors
    # (district.yaml `doors:`, stored by its English name); None: the location as stored.
    location: str | None = None


class Templates:
    """One Jinja environment per language over a template directory."""

    def __init__(self, root: Path = TEMPLATES) -> None:
        self.root = root
        self._envs: dict[str, Environment] = {}
        for lang in LANGUAGES:
            env = Environment(
                loader=FileSystemLoader(root),
                autoescape=select_autoescape(["html"], default_for_string=False),
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                # Compile each template once: without this every render stats the file to
                # see if it changed. A template edited while running is not picked up;
                # restart (which re-runs `check`, so no unchecked template is ever used).
                auto_reload=False,
            )
            env.filters["label"] = lambda value, _lang=lang: label(value, _lang)
            self._envs[lang] = env

    def render(self, language: str, name: str, values: dict[str, Any]) -> str:
        env = self._envs.get(language) or self._envs["en"]
        lang = language if language in self._envs else "en"
        return env.get_template(f"{lang}/{name}").render(values)

    def check(self) -> None:
        """Render every template with a sample alert; raise TemplateCheckError on any problem."""
        sample = _sample()
        problems: list[str] = []
        for lang in LANGUAGES:
            names = ["subject.txt"] + [
                f"{variant}.{kind}"
                for variant in {DEFAULT_VARIANT, *VARIANTS.values()}
                for kind in KINDS
            ]
            for name in sorted(names):
                try:
                    out = self.render(
                        lang,
                        name,
                        _values(sample, lang, role="law", kind="escalation", ack_url="http://x/a"),
                    )
                except TemplateError as exc:
                    where = f"{self.root / lang / name}"
                    # Only syntax and not-found errors carry a line number.
                    lineno = getattr(exc, "lineno", None)
                    line = f" line {lineno}" if lineno else ""
                    problems.append(f"{where}{line}: {type(exc).__name__}: {exc}")
                    continue
                if not out.strip():
                    problems.append(f"{self.root / lang / name}: renders empty")
        if problems:
            raise TemplateCheckError(
                "notifier templates are missing or broken (fix them before starting):\n  "
                + "\n  ".join(problems)
            )


@cache
def default_templates() -> Templates:
    return Templates(TEMPLATES)


def check_templates(root: Path = TEMPLATES) -> None:
    Templates(root).check()


def message_id(notification_id: str) -> str:
    """Derived from the notification id, so a re-sent alert is recognisably the same one."""
    return f"<{notification_id}@dooralert>"


@dataclass(frozen=True)
class _Sample:
    r: EncounterReport
    ctx: AlertContext
    severity: str
    incident_id: str


def _sample() -> _Sample:
    at = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    r = EncounterReport.model_validate(
        {
            "school_id": "sample",
            "occurred_at": at,
            "location": "Front door",
            "agency_stated": "ice",
            "agent_count": 2,
            "credentials_shown": True,
            "document": "administrative_warrant",
            "signed_by_judge": "no",
            "purpose": "unspecified",
            "entry": "kept_outside",
            "notes": "sample",
        }
    )
    ctx = AlertContext("District", "School", "UTC", "Name", "http://x/incidents/i", "+1 555")
    return _Sample(r, ctx, "critical", "sample-incident")


def _values(
    s: _Sample, language: str, *, role: str, kind: str = "alert", ack_url: str | None = None
) -> dict[str, Any]:
    r = s.r
    assert r.occurred_at is not None
    local = r.occurred_at.astimezone(ZoneInfo(s.ctx.timezone))
    prefix, headline = kind_text(kind, language)
    return {
        "kind": kind,
        "subject_prefix": prefix,
        "headline": headline,
        "ack_url": ack_url,
        "ack_label": ack_text(language),
        "r": r,
        "ctx": s.ctx,
        "severity": s.severity,
        "role": role,
        "role_name": role_name(role, language),
        "when": local.strftime("%Y-%m-%d %H:%M %Z"),
        "protocol": protocol(r.document, language),
        "incident_id": s.incident_id,
    }


class _FoldOnceHeader(BaseHeader):
    """A header that remembers how it folds under each policy: the cached headers below are
    shared by every email, and folding (re-walking the parse tree) is done when each is
    flattened for sending."""

    def fold(self, *, policy: Any) -> str:
        folded: dict[Any, str] = self.__dict__.setdefault("_dooralert_folded", {})
        out = folded.get(policy)
        if out is None:
            out = folded[policy] = super().fold(policy=policy)
        return out


class _CachingHeaderRegistry(HeaderRegistry):
    """The stdlib registry, with its work cached. Building an email spent over half of its
    time here: HeaderRegistry creates a new class for every header it parses, then parses
    the value, though most headers (From, MIME-Version, Content-Type: text/plain; ...,
    Content-Transfer-Encoding, Auto-Submitted, Content-Language) are the same in every email.
    Header objects are immutable, so the same (name, value) can share one; the output is
    byte-for-byte what the default policy produces."""

    def __init__(self) -> None:
        super().__init__(base_class=_FoldOnceHeader)
        self._classes: dict[str, type] = {}
        self._header = lru_cache(maxsize=512)(super().__call__)

    def __getitem__(self, name: str) -> type:
        key = name.lower()  # what the stdlib keys the class on
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: str) -> Any:
        return self._header(name, value)


# email.policy.default with the caching registry (the same policy in every other respect).
_POLICY = email_policy.default.clone(header_factory=_CachingHeaderRegistry())

# The multipart boundary of this process's emails, in the generator's own format. RFC 2046
# asks only that it appear in none of the parts; left unset, sending makes one per email,
# compiles a regex to check it and re-parses the Content-Type to set it (and wire.py, which
# writes the bytes sent, needs it set). An email whose text holds it gets one made for it.
BOUNDARY = "=" * 15 + f"{secrets.randbits(63):019d}" + "=="


def build_email(
    *,
    request: NotificationRequested,
    report: EncounterReported,
    ctx: AlertContext,
    sender: str,
    to: str,
    language: str = "en",
    templates: Templates | None = None,
    ack_url: str | None = None,
    notes: str | None = None,
) -> EmailMessage:
    """The email for one notification. `report` is the incident's current report (for an
    update, with the changes applied); `ack_url` is the recipient's acknowledgement link;
    `notes` the staff notes opened from their seal (the log holds them only sealed)."""
    tpl = templates or default_templates()
    lang = language if language in LANGUAGES else "en"
    # Not validated again: the email must go out even for a report an older or buggy writer
    # stored (the templates escape every value).
    facts = {k: v for k, v in report.data if k not in ("notes", "notes_sealed", "notes_v1")}
    if ctx.location is not None:
        facts["location"] = ctx.location
    shown = EncounterReport.model_construct(**facts, notes=notes or None)
    values = _values(
        _Sample(shown, ctx, request.data.severity, report.incident_id),
        lang,
        role=request.data.role,
        kind=request.data.kind,
        ack_url=ack_url,
    )
    # A stand-in for several roles ("law+safety") reads as their names joined.
    values["role_name"] = " + ".join(role_name(r, lang) for r in request.data.role.split("+"))
    variant = variant_for(request.data.role)
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = header_safe(tpl.render(lang, "subject.txt", values))
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(request.recorded_at)
    msg["Message-ID"] = message_id(request.data.notification_id)
    msg["X-Dooralert-Incident"] = report.incident_id
    msg["Auto-Submitted"] = "auto-generated"
    text = tpl.render(lang, f"{variant}.txt", values)
    html = tpl.render(lang, f"{variant}.html", values)
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    if BOUNDARY not in text and BOUNDARY not in html:
        msg.set_boundary(BOUNDARY)
    msg["Content-Language"] = lang  # after set_content, which drops Content-* headers
    return msg


def build_pattern_email(
    *,
    request: NotificationRequested,
    pattern: PatternDetected,
    school_names: dict[str, str],
    ctx: AlertContext,
    sender: str,
    to: str,
    language: str = "en",
) -> EmailMessage:
    """Encounters at several schools in a short window: one alert to district leadership."""
    d = pattern.data
    schools = ", ".join(school_names.get(s, s) for s in d.school_ids)
    if language == "es":
        subject = (
            f"[dooralert CRÍTICO] Encuentros en {len(d.school_ids)} escuelas en "
            f"{d.window_minutes} minutos"
        )
        body = (
            f"Se reportaron agentes en {len(d.school_ids)} escuelas en los últimos "
            f"{d.window_minutes} minutos: {schools}.\nPuede tratarse de una operación "
            f"coordinada. Incidentes: {', '.join(d.incident_ids)}.\n"
        )
    else:
        subject = (
            f"[dooralert CRITICAL] Encounters at {len(d.school_ids)} schools within "
            f"{d.window_minutes} minutes"
        )
        body = (
            f"Agents were reported at {len(d.school_ids)} schools within "
            f"{d.window_minutes} minutes: {schools}.\nThis may be a coordinated operation. "
            f"Incidents: {', '.join(d.incident_ids)}.\n"
        )
    if ctx.emergency_phone:
        body += f"District emergency line: {ctx.emergency_phone}\n"
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = header_safe(subject)
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(request.recorded_at)
    msg["Message-ID"] = message_id(request.data.notification_id)
    msg["X-Dooralert-Incident"] = pattern.incident_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    msg["Content-Language"] = language
    return msg


__all__ = [
    "AlertContext",
    "TemplateCheckError",
    "Templates",
    "build_email",
    "check_templates",
    "header_safe",
    "make_msgid",
    "message_id",
    "variant_for",
]
