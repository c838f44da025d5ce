"""Building an alert email (pure): the report and recipient in, a MIME message out.

Templates live under `templates/<language>/`: `subject.txt`, and a plain-text and an
autoescaped HTML body per variant. Which variant a role gets is decided here, in `variant_for`.
`check_templates` renders every language × variant at start-up, so a missing or broken
template stops the notifier before any alert depends on it.

Built for a burst (issue 13: this was about a seventh of the notifier's CPU): the emails of
one alert differ only in the recipient's name, links and role and the staff notes, so the
templates are rendered once per alert, language and variant with markers in those places
(`Templates.alert`) and each email fills them in; the MIME structure set_content would make is
made directly, with the bodies encoded as it encodes them (wire.encode_text), and the bytes
SMTP carries are written alongside (wire.BuiltEmail). The result is what the email package
made, byte for byte (tests/unit/test_wire_build.py); what that cannot be said of (a base64
body, text holding the boundary, a template that does more with a recipient's value than
show it) is made the email package's way.

Few lines (issue 13: an SMTP server reads an email a line at a time): the text parts go to a
server with 8BITMIME as their own lines, up to 998 octets each, and the HTML templates' layout
whitespace is collapsed as they are compiled (htmlspace.py), so an alert is about half the
lines it was; a server without 8BITMIME gets the text parts quoted-printable (`_email`).
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    meta,
    select_autoescape,
)
from markupsafe import escape

from schemas.events import EncounterReported, NotificationRequested, PatternDetected
from schemas.report import EncounterReport
from services.notifier.htmlspace import CompactHtml
from services.notifier.i18n import LANGUAGES, ack_text, kind_text, label, protocol, role_name
from services.notifier.wire import (
    LONGEST_8BIT,
    MAX_LINE,
    NO_LINES,
    BuiltEmail,
    KnownLines,
    body_bytes,
    encode_text,
    header_bytes,
    is_plain,
)

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

    def __init__(self, root: Path = TEMPLATES, *, compact_html: bool = True) -> None:
        """`compact_html=False`: the HTML templates' whitespace as written (for tests)."""
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
                # The HTML templates' layout whitespace collapsed as they are compiled (only
                # their own text, never a value): a few lines instead of a line per tag.
                extensions=[CompactHtml] if compact_html else [],
            )
            env.filters["label"] = lambda value, _lang=lang: label(value, _lang)
            self._envs[lang] = env
        # The alerts rendered with markers in the slots, newest last (see `alert`).
        self._rendered: OrderedDict[tuple[Any, ...], _Rendered] = OrderedDict()
        self._slot_safe: dict[tuple[str, str], bool] = {}
        self._role_read: bool | None = None

    def render(self, language: str, name: str, values: dict[str, Any]) -> str:
        env = self._envs.get(language) or self._envs["en"]
        lang = language if language in self._envs else "en"
        return env.get_template(f"{lang}/{name}").render(values)

    def alert(self, job: _AlertJob) -> AlertTexts:
        """The subject, text and HTML of one alert email. The emails of one alert differ only
        in the slots (SLOTS), so the templates are rendered once per alert, language and
        variant with a marker in each slot, and each email fills the slots in: the cache
        holds no person's name, link or notes. Rendered directly instead when the templates
        do something with a slot's value other than show it (checked on first use) or a
        value holds a marker."""
        names = ("subject.txt", f"{job.variant}.txt", f"{job.variant}.html")
        hit = self._marked(job, names)
        if hit is None:
            values = job.values()
            subject, text, html = (self.render(job.lang, name, values) for name in names)
            return AlertTexts(header_safe(subject), text, html)
        plain = job.slots
        escaped = tuple(str(escape(v)) for v in plain)
        subject = (
            hit.subject if isinstance(hit.subject, str) else header_safe(_fill(hit.subject, plain))
        )
        return AlertTexts(
            subject,
            _fill(hit.text, plain),
            _fill(hit.html, escaped),
            hit.text_lines,
            hit.html_lines,
        )

    def _marked(self, job: _AlertJob, names: tuple[str, ...]) -> _Rendered | None:
        """The alert rendered with markers: from the cache, or rendered now and kept; None
        where it cannot be (see `alert`)."""
        key = job.key(with_role=self._uses_role())
        if key is None or not all(job.slots[i] for i in _REQUIRED_SLOTS):
            return None
        hit = self._rendered.get(key)
        if hit is not None:
            self._rendered.move_to_end(key)
            return hit
        if not all(self._slots_ok(job.lang, name) for name in names):
            return None
        hit = self._render_marked(job, names)
        if hit is not None:
            self._rendered[key] = hit
            if len(self._rendered) > _RENDERED_MAX:
                self._rendered.popitem(last=False)
        return hit

    def _render_marked(self, job: _AlertJob, names: tuple[str, ...]) -> _Rendered | None:
        values = job.values(marked=True)
        subject, text, html = (_pieces(self.render(job.lang, n, values)) for n in names)
        if subject is None or text is None or html is None:
            return None  # a value of the alert holds a marker character
        fixed: str | _Pieces = subject
        if all(isinstance(p, str) for p in subject):
            # No slot in the subject (the shipped templates): the final subject, made once.
            fixed = header_safe(_fill(subject, ()))
        return _Rendered(fixed, text, html, _known_lines(text), _known_lines(html))

    def _uses_role(self) -> bool:
        """Whether a template reads `role` (the key then holds it; the shipped ones don't)."""
        if self._role_read is None:
            env = self._envs["en"]
            found = False
            for name in env.list_templates():
                try:
                    source = FileSystemLoader(self.root).get_source(env, name)[0]
                    found = found or "role" in meta.find_undeclared_variables(env.parse(source))
                except TemplateError:
                    continue  # broken: `check` says so, and rendering it fails
            self._role_read = found
        return self._role_read

    def _slots_ok(self, language: str, name: str) -> bool:
        """Whether rendering `name` with markers and filling them in gives what rendering with
        the values gives, for two sample recipients (memoized)."""
        lang = language if language in self._envs else "en"
        ok = self._slot_safe.get((lang, name))
        if ok is None:
            try:
                ok = all(self._same_filled(lang, name, slots) for slots in _SAMPLE_SLOTS)
            except TemplateError:
                ok = False  # rendered directly, which raises as it did
            self._slot_safe[(lang, name)] = ok
        return ok

    def _same_filled(self, lang: str, name: str, slots: tuple[str, ...]) -> bool:
        s = _sample()
        job = _AlertJob(
            lang=lang,
            variant=DEFAULT_VARIANT,
            role="law",
            kind="escalation",
            severity=s.severity,
            incident_id=s.incident_id,
            ctx=s.ctx,
            facts=tuple((k, v) for k, v in s.r if k not in ("notes", "notes_sealed", "notes_v1")),
            slots=slots,
            has_ack=True,
            has_notes=True,
        )
        direct = self.render(lang, name, job.values())
        marked = _pieces(self.render(lang, name, job.values(marked=True)))
        if marked is None:
            return False
        fill = slots if not name.endswith(".html") else tuple(str(escape(v)) for v in slots)
        return _fill(marked, fill) == direct

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


# --- one alert's emails: render once, fill in each recipient's parts --------------------------

# What differs between the emails of one alert (besides the role's variant and the language):
# the recipient's name, their status and acknowledgement links, their role's name, and the
# staff notes, which are filled in per email so that no notes outlive the email in a cache.
SLOTS = ("recipient_name", "status_url", "ack_url", "role_name", "notes")
_REQUIRED_SLOTS = (0, 1, 3)  # an empty name, status link or role name: rendered directly
# A marker: private-use characters around this process's secret and the slot's number. Any
# private-use opening character in a rendering that is not part of a marker (a value held
# one) sends the email down the direct rendering; the secret keeps a value from passing for
# a marker.
_MARK_SECRET = secrets.token_hex(8)
_MARKS = tuple(f"\ue000{_MARK_SECRET}{i}\ue001" for i in range(len(SLOTS)))
_MARK_RE = re.compile(f"\ue000{_MARK_SECRET}([0-9])\ue001")
_RENDERED_MAX = 256  # alerts kept rendered (a burst's incidents come and go within seconds)
# Two recipients the start-up check fills in: values the HTML must escape, and plain ones.
_SAMPLE_SLOTS = (
    (
        "Dña. O'Brien & <Co>",
        'http://x/incidents/i?token=a&b="c"',
        "http://x/ack/t'1",
        "R&D <law>",
        'n<o>t&e "s"\nline',
    ),
    ("Z", "https://y/s", "https://y/a", "Role", "plain notes"),
)
_Pieces = tuple[str | int, ...]  # text, and the index of a slot where one goes


@dataclass(frozen=True)
class _Rendered:
    subject: str | _Pieces  # str: the final subject (no slot in it)
    text: _Pieces
    html: _Pieces
    # The lines without a slot, encoded once for every email of the alert (wire.encode_text)
    text_lines: KnownLines
    html_lines: KnownLines


class AlertTexts(NamedTuple):
    """An alert email's subject, text and HTML, and the lines of each already encoded."""

    subject: str
    text: str
    html: str
    text_lines: KnownLines = NO_LINES
    html_lines: KnownLines = NO_LINES


def _known_lines(pieces: _Pieces) -> KnownLines:
    """The lines of a rendering that hold no slot."""
    marked = "".join(p if isinstance(p, str) else _MARKS[p] for p in pieces)
    return KnownLines(line for line in marked.split("\n") if "\ue000" not in line)


def _pieces(rendered: str) -> _Pieces | None:
    """A rendering with markers, cut at them; None if a marker character is left (a value
    held one)."""
    parts = _MARK_RE.split(rendered)
    out: list[str | int] = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(int(part))
        elif part:
            if "\ue000" in part or "\ue001" in part:
                return None
            out.append(part)
    return tuple(out)


def _fill(pieces: _Pieces, slots: tuple[str, ...]) -> str:
    return "".join([p if isinstance(p, str) else slots[p] for p in pieces])


@dataclass(frozen=True)
class _AlertJob:
    """What one alert email is rendered from."""

    lang: str
    variant: str
    role: str
    kind: str
    severity: str
    incident_id: str
    ctx: AlertContext
    facts: tuple[tuple[str, Any], ...]  # the report's fields but the notes
    slots: tuple[str, ...]  # SLOTS' values ("" for an absent ack link or notes)
    has_ack: bool
    has_notes: bool

    def key(self, *, with_role: bool) -> tuple[Any, ...] | None:
        """What the rendering with markers depends on; None if it cannot be a key."""
        c = self.ctx
        key = (
            self.lang,
            self.variant,
            self.kind,
            self.severity,
            self.incident_id,
            self.role if with_role else None,
            self.has_ack,
            self.has_notes,
            c.district_name,
            c.school_name,
            c.timezone,
            c.emergency_phone,
            self.facts,
        )
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def values(self, *, marked: bool = False) -> dict[str, Any]:
        """The templates' values: the slots' own, or markers where they go."""
        slot = _MARKS if marked else self.slots
        shown = EncounterReport.model_construct(
            **dict(self.facts), notes=slot[4] if self.has_notes else None
        )
        ctx = replace(self.ctx, recipient_name=slot[0], status_url=slot[1])
        values = _values(
            _Sample(shown, ctx, self.severity, self.incident_id),
            self.lang,
            role=self.role,
            kind=self.kind,
            ack_url=slot[2] if self.has_ack else None,
        )
        values["role_name"] = slot[3]
        return values


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
    role = request.data.role
    # A stand-in for several roles ("law+safety") reads as their names joined.
    role_label = " + ".join(role_name(r, lang) for r in role.split("+"))
    job = _AlertJob(
        lang=lang,
        variant=variant_for(role),
        role=role,
        kind=request.data.kind,
        severity=request.data.severity,
        incident_id=report.incident_id,
        ctx=ctx,
        facts=tuple(facts.items()),
        slots=(ctx.recipient_name, ctx.status_url, ack_url or "", role_label, notes or ""),
        has_ack=bool(ack_url),
        has_notes=bool(notes),
    )
    texts = tpl.alert(job)
    head = _Head(texts.subject, sender, to, request, report.incident_id, lang)
    return _email(
        head, text=texts.text, html=texts.html, lines=(texts.text_lines, texts.html_lines)
    )


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
    head = _Head(header_safe(subject), sender, to, request, pattern.incident_id, language)
    return _email(head, text=body, html=None)


# --- the MIME structure, made directly -----------------------------------------------------


@dataclass(frozen=True)
class _Head:
    """The headers of a dooralert email that are not about its content."""

    subject: str
    sender: str
    to: str
    request: NotificationRequested
    incident_id: str
    language: str

    def items(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Subject", self.subject),
            ("From", self.sender),
            ("To", self.to),
            ("Date", format_datetime(self.request.recorded_at)),
            ("Message-ID", message_id(self.request.data.notification_id)),
            ("X-Dooralert-Incident", self.incident_id),
            ("Auto-Submitted", "auto-generated"),
        )


def _email(
    head: _Head,
    *,
    text: str,
    html: str | None,
    lines: tuple[KnownLines, KnownLines] = (NO_LINES, NO_LINES),
    wide: bool = True,
) -> EmailMessage:
    """The message `set_content(text)` (+ `add_alternative(html, subtype="html")`) would make,
    header for header and part for part, built directly: set_content's header parsing,
    parameter rewriting and part shuffling were most of the cost of an email. Its choices are
    kept (wire.encode_text: 7bit/8bit/quoted-printable as it picks them); the rare email it
    would send base64, or whose text holds the boundary, is made by set_content itself.
    tests/unit/test_wire_build.py holds the two equal.

    `wide` (what is sent to a server with 8BITMIME): a text part goes as its lines, 7bit or
    8bit, while none is longer than 998 octets (set_content's choice with that line limit;
    else quoted-printable at 76 characters as before), which about halves the lines an SMTP
    server reads. How to make the email with `wide=False` (policy.default's choice: a part
    with a line over 78 octets quoted-printable) is kept with it, for a server without
    8BITMIME (wire.for_7bit_server)."""
    longest = LONGEST_8BIT if wide else MAX_LINE
    plain = encode_text(text, lines[0], longest=longest)
    rich = encode_text(html, lines[1], longest=longest) if html is not None else None
    if html is not None and (rich is None or BOUNDARY in text or BOUNDARY in html):
        plain = None  # base64, or a boundary the email package must make
    if plain is None:
        msg = _email_by_set_content(head, text=text, html=html, wide=wide)
    else:
        msg = _built(head, plain, rich)
    if wide and isinstance(msg, BuiltEmail):
        # Made only if a server without 8BITMIME is met (none of the usual MTAs).
        msg.keep_7bit_form(lambda: _email(head, text=text, html=html, lines=lines, wide=False))
    return msg


def _built(head: _Head, plain: tuple[str, str], rich: tuple[str, str] | None) -> BuiltEmail:
    """The message of `_email` with its bytes, from its parts' encodings."""
    msg = BuiltEmail(policy=_POLICY)
    out: list[bytes] = []
    for name, value in head.items():
        stored = _header(name, value)
        msg.set_raw(name, stored)
        out.append(header_bytes(name, stored))
    language = _header("Content-Language", head.language)
    if rich is None:
        _set_text(msg, "plain", plain)
        msg.set_raw("MIME-Version", "1.0")
        msg.set_raw("Content-Language", language)
        out += (_TEXT_HEADS["plain", plain[0]], _MIME_VERSION)
        out += (header_bytes("Content-Language", language), b"\r\n", body_bytes(plain[1]))
    else:
        msg.set_raw("MIME-Version", "1.0")
        msg.set_raw("Content-Type", _multipart_type())
        msg.set_raw("Content-Language", language)
        text_part = EmailMessage(policy=_POLICY)
        _set_text(text_part, "plain", plain)
        html_part = EmailMessage(policy=_POLICY)
        _set_text(html_part, "html", rich)
        html_part.set_raw("MIME-Version", "1.0")  # as add_alternative leaves it
        msg.set_payload([text_part, html_part])
        # BytesGenerator's multipart: the delimiter before each part, the parts' headers and
        # bodies, the close delimiter.
        delimiter = _delimiter()
        out += (_MIME_VERSION, _multipart_type_bytes())
        out += (header_bytes("Content-Language", language), b"\r\n", delimiter, b"\r\n")
        out += (_TEXT_HEADS["plain", plain[0]], b"\r\n", body_bytes(plain[1]))
        out += (b"\r\n", delimiter, b"\r\n", _TEXT_HEADS["html", rich[0]], _MIME_VERSION)
        out += (b"\r\n", body_bytes(rich[1]), b"\r\n", delimiter, b"--\r\n")
    msg.keep_bytes(b"".join(out))
    return msg


def _set_text(part: EmailMessage, subtype: str, encoded: tuple[str, str]) -> None:
    cte, payload = encoded
    part.set_raw("Content-Type", _TEXT_TYPES[subtype])
    part.set_raw("Content-Transfer-Encoding", cte)
    part.set_payload(payload)


# The headers every text part has, stored as set_content stores them and written as the
# generator writes them; MIME-Version.
_TEXT_TYPES = {subtype: f'text/{subtype}; charset="utf-8"' for subtype in ("plain", "html")}
_TEXT_HEADS = {
    (subtype, cte): header_bytes("Content-Type", value)
    + header_bytes("Content-Transfer-Encoding", cte)
    for subtype, value in _TEXT_TYPES.items()
    for cte in ("7bit", "8bit", "quoted-printable")
}
_MIME_VERSION = header_bytes("MIME-Version", "1.0")


def _header(name: str, value: str) -> Any:
    """What `msg[name] = value` would store, as the parser stores headers: the value itself
    where the generator writes it unchanged (ASCII, printable, fits on a line, no encoded
    word), else the policy's parsed header (which refuses line breaks; cached per value)."""
    if (
        len(name) + len(value) + 2 <= MAX_LINE
        and value.isascii()
        and value.isprintable()
        and "=?" not in value
    ) or (name == "Subject" and is_plain(value)):
        return value  # a plain Subject is folded by wire.fold_plain, as the stdlib folds it
    return _POLICY.header_store_parse(name, value)[1]


def _wide_cte(text: str) -> str | None:
    """7bit or 8bit where every line of `text` fits in 998 octets, else None (set_content's
    own choice: quoted-printable at 76 characters, or base64)."""
    data = text.encode("utf-8")
    if max(map(len, data.splitlines()), default=0) > LONGEST_8BIT:
        return None
    return "7bit" if data.isascii() else "8bit"


@cache
def _multipart_type() -> Any:
    return _POLICY.header_store_parse(
        "Content-Type", f'multipart/alternative; boundary="{BOUNDARY}"'
    )[1]


@cache
def _multipart_type_bytes() -> bytes:
    return header_bytes("Content-Type", _multipart_type())


@cache
def _delimiter() -> bytes:
    return f"--{BOUNDARY}".encode("ascii")


def _email_by_set_content(
    head: _Head, *, text: str, html: str | None, wide: bool = False
) -> EmailMessage:
    """The email as the email package makes it (the reference `_email` is tested against);
    `wide`: a part whose lines fit in 998 octets as they are (7bit or 8bit), as for `_email`."""
    msg = BuiltEmail(policy=_POLICY) if wide else EmailMessage(policy=_POLICY)
    for name, value in head.items():
        msg[name] = value
    msg.set_content(text, cte=_wide_cte(text) if wide else None)
    if html is not None:
        msg.add_alternative(html, subtype="html", cte=_wide_cte(html) if wide else None)
        if BOUNDARY not in text and BOUNDARY not in html:
            msg.set_boundary(BOUNDARY)
    msg["Content-Language"] = head.language  # after set_content, which drops Content-* headers
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
