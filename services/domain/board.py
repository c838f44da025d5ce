"""The district board (pure): which incidents are open, in what order, and what each row says.

District staff (law, safety, leadership) watch every school's open incidents at once. A row is
built from the same incident fold the incident page uses, plus the pattern alerts that name the
incident; the board lists those not resolved and reported within its window, the ones still
waiting for a confirmation first, newest first within each group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.events import PatternDetected, Severity
from services.domain.incident import IncidentState

# How far back the board looks by default: an incident left open longer is still open, but a
# week is what a safety desk works from; older ones are found through their own page.
DEFAULT_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Confirmation:
    """Someone who acknowledged: for which role(s), who, when."""

    role: str
    contact_id: str
    at: datetime


@dataclass(frozen=True)
class PatternAlert:
    """A pattern alert naming an incident: its rule's name, and what it saw (encounters at
    `schools` schools within `minutes`), which the board says in words."""

    name: str
    schools: int
    minutes: int


@dataclass(frozen=True)
class BoardRow:
    """One open incident as the board shows it."""

    incident_id: str
    school_id: str
    reported_at: datetime
    document: str | None
    entry: str | None
    severity: Severity | None
    confirmed: tuple[Confirmation, ...]
    waiting_for: tuple[str, ...]  # required roles nobody has acknowledged for yet
    tier: int  # 0: the first alert; n: escalated n times
    patterns: tuple[PatternAlert, ...]  # the pattern alerts that include this incident

    @property
    def waiting(self) -> bool:
        """Nobody has confirmed yet, or a required role has not."""
        return bool(self.waiting_for) or not self.confirmed


def add_pattern(seen: dict[str, list[PatternAlert]], event: PatternDetected) -> None:
    """Note `event` on each incident it names: once per pattern, in log order, a later alert
    of the same pattern (more schools) replacing the earlier."""
    d = event.data
    alert = PatternAlert(d.pattern, len(d.school_ids), d.window_minutes)
    for incident_id in d.incident_ids:
        alerts = seen.setdefault(incident_id, [])
        at = next((i for i, a in enumerate(alerts) if a.name == d.pattern), None)
        if at is None:
            alerts.append(alert)
        else:
            alerts[at] = alert


def patterns_by_incident(events: Iterable[PatternDetected]) -> dict[str, list[PatternAlert]]:
    """Each incident's pattern alerts (see `add_pattern`)."""
    out: dict[str, list[PatternAlert]] = {}
    for event in events:
        add_pattern(out, event)
    return out


def row(state: IncidentState, patterns: Iterable[PatternAlert] = ()) -> BoardRow | None:
    """The board row of an incident; None if its report is not known (begun before the
    window, or only later events were read)."""
    if state.report is None or state.reported_at is None:
        return None
    return BoardRow(
        incident_id=state.incident_id,
        school_id=state.school_id,
        reported_at=state.reported_at,
        document=state.report.document.value,
        entry=state.report.entry.value,
        severity=state.severity,
        confirmed=tuple(Confirmation(a.role, a.contact_id, a.at) for a in state.acknowledgements),
        waiting_for=tuple(state.missing_acks()),
        tier=max((e.tier for e in state.escalations), default=0),
        patterns=tuple(patterns),
    )


def open_board(
    states: Iterable[IncidentState],
    patterns: Mapping[str, list[PatternAlert]],
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> list[BoardRow]:
    """The open incidents reported within `window` before `now`: waiting ones first, then
    the confirmed; newest first within each."""
    since = now - window
    rows = [
        r
        for s in states
        if s.status == "open"
        and (r := row(s, patterns.get(s.incident_id, ()))) is not None
        and r.reported_at >= since
    ]
    rows.sort(key=lambda r: r.reported_at, reverse=True)
    rows.sort(key=lambda r: not r.waiting)  # stable: newest first stays within each group
    return rows


# The board's own words, English and Spanish (the shared catalogue, services/domain/i18n.py,
# is looked up for anything not here: field values, roles, the page frame).
BOARD_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "board.title": "District board: open incidents",
        "board.intro": "Every school's open incidents of the last {days} days, those still "
        "waiting for a confirmation first. It updates by itself.",
        "board.refresh": "Refresh now",
        "board.updated": "Updated {time}",
        "board.none": "No open incidents.",
        "board.count": "{open} open, {waiting} waiting for a confirmation",
        "board.school": "School",
        "board.reported": "Reported",
        "board.document": "Document",
        "board.entry": "Entry",
        "board.confirmed": "Confirmed by",
        "board.tier": "Escalation",
        "board.patterns": "Pattern alerts",
        "board.pattern": "Encounters at {schools} schools within {minutes} minutes",
        "board.severity": "Severity",
        "board.waiting": "Waiting for {roles}",
        "board.nobody": "Nobody yet",
        "board.tier0": "First alert",
        "board.tierN": "Escalated (tier {tier})",
        "board.open_incident": "Open incident",
        "board.signin.title": "Sign in to the district board",
        "board.signin.intro": "For district staff (law, safety, leadership): give the district "
        "board key once on this device.",
        "board.signin.key": "District board key",
        "board.signin.bad_key": "This key is not a district board key.",
        "board.signin.expired": "Your board sign-in has ended. Sign in again.",
        "board.signout": "Leave the board",
        "board.unreachable": "The event log cannot be read right now: this board may be out "
        "of date.",
        "board.live": "Live",
        "board.link.expired": "This board link has expired. Ask the district for a new "
        "one, or sign in with the district board key.",
        "board.link.invalid": "This board link is not valid (altered, or for someone who "
        "no longer has a district role). Sign in with the district board key.",
    },
    "es": {
        "board.title": "Tablero del distrito: incidentes abiertos",
        "board.intro": "Los incidentes abiertos de todas las escuelas de los últimos {days} "
        "días; primero los que aún esperan una confirmación. Se actualiza solo.",
        "board.refresh": "Actualizar ahora",
        "board.updated": "Actualizado {time}",
        "board.none": "No hay incidentes abiertos.",
        "board.count": "{open} abiertos, {waiting} esperando una confirmación",
        "board.school": "Escuela",
        "board.reported": "Reportado",
        "board.document": "Documento",
        "board.entry": "Entrada",
        "board.confirmed": "Confirmado por",
        "board.tier": "Escalamiento",
        "board.patterns": "Alertas de patrón",
        "board.pattern": "Encuentros en {schools} escuelas en {minutes} minutos",
        "board.severity": "Gravedad",
        "board.waiting": "Esperando a {roles}",
        "board.nobody": "Nadie todavía",
        "board.tier0": "Primera alerta",
        "board.tierN": "Escalado (nivel {tier})",
        "board.open_incident": "Abrir incidente",
        "board.signin.title": "Iniciar sesión en el tablero del distrito",
        "board.signin.intro": "Para el personal del distrito (legal, seguridad, dirección): "
        "ingrese la clave del tablero del distrito una vez en este dispositivo.",
        "board.signin.key": "Clave del tablero del distrito",
        "board.signin.bad_key": "Esta clave no es una clave del tablero del distrito.",
        "board.signin.expired": "Su sesión del tablero terminó. Inicie sesión de nuevo.",
        "board.signout": "Salir del tablero",
        "board.unreachable": "El registro de eventos no se puede leer ahora: este tablero "
        "puede estar desactualizado.",
        "board.live": "En vivo",
        "board.link.expired": "Este enlace al tablero ha vencido. Pida uno nuevo al "
        "distrito o inicie sesión con la clave del tablero del distrito.",
        "board.link.invalid": "Este enlace al tablero no es válido (alterado, o de alguien "
        "que ya no tiene un rol en el distrito). Inicie sesión con la clave del tablero del "
        "distrito.",
    },
}


def board_text(key: str, language: str, **values: object) -> str | None:
    """The board's sentence `key` in `language` (English if missing); None if not a board key."""
    found = BOARD_TEXT.get(language, {}).get(key) or BOARD_TEXT["en"].get(key)
    if found is None:
        return None
    return found.format(**values) if values else found
