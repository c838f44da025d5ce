"""`rules.yaml`: load, validate in full, match (pure). DESIGN §5.

Validation happens once, at load, against the report model and the directory's roles, so
the engine only walks data it can trust. A field missing from a report never matches.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.events import Severity
from schemas.report import EncounterReport
from services.domain.directory import DISTRICT_ROLES, KNOWN_ROLES
from services.runtime.config import ConfigError, load_yaml_model

Scalar = str | int | bool
_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_UNITS = {"s": 1, "m": 60, "h": 3600}
SEVERITY_ORDER: dict[str, int] = {"info": 0, "high": 1, "critical": 2}


def parse_duration(text: str) -> timedelta:
    """`90s`, `2m` or `1h` as a timedelta (positive only)."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f'bad duration "{text}": write a positive number and s, m or h, e.g. 2m')
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


class InList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    in_: list[Scalar] = Field(alias="in", min_length=1)


Condition = Scalar | InList
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Window(BaseModel):
    """A time-of-day window (in the rules' timezone), optionally on some weekdays only."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    days: list[Day] = Field(default_factory=lambda: list(_DAYS))

    @model_validator(mode="after")
    def _check(self) -> Window:
        for value in (self.from_, self.to):
            if not _HHMM.match(value):
                raise ValueError(f'bad time "{value}": write HH:MM (24-hour), e.g. 07:30')
        return self

    def contains(self, moment: datetime) -> bool:
        """Whether `moment` (already in the rules' timezone) falls in this window."""
        start = time.fromisoformat(self.from_)
        end = time.fromisoformat(self.to)
        t = moment.time().replace(tzinfo=None)
        if _DAYS[moment.weekday()] not in self.days:
            return False
        # A window like 18:00–06:00 wraps past midnight.
        return start <= t < end if start <= end else (t >= start or t < end)


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    match: dict[str, Condition]
    notify: list[str] = Field(min_length=1)
    require_ack: list[str] = Field(default_factory=list)
    ack_within: str | None = None
    severity: Severity = "high"
    continue_: bool = Field(default=False, alias="continue")
    when: Window | None = None

    @model_validator(mode="after")
    def _check(self) -> Route:
        where = f'route "{self.name}"'
        for role in [*self.notify, *self.require_ack]:
            if role not in KNOWN_ROLES:
                raise ValueError(
                    f'undefined role "{role}" in {where} (known: {", ".join(KNOWN_ROLES)})'
                )
        missing = [r for r in self.require_ack if r not in self.notify]
        if missing:
            raise ValueError(f"{where} requires an ack from roles it does not notify: {missing}")
        if self.require_ack and not self.ack_within:
            raise ValueError(f"{where} has require_ack but no ack_within")
        if self.ack_within is not None:
            try:
                parse_duration(self.ack_within)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        for field, cond in self.match.items():
            _check_condition(where, field, cond)
        return self

    @property
    def ack_timeout(self) -> timedelta | None:
        """How long the required roles have to acknowledge, if the route says."""
        return parse_duration(self.ack_within) if self.ack_within else None

    def matches(self, report: EncounterReport, tz: ZoneInfo | None = None) -> bool:
        """Whether every condition of the route holds for `report`."""
        if self.when is not None:
            if report.occurred_at is None:
                return False  # a missing field never matches
            if not self.when.contains(report.occurred_at.astimezone(tz or ZoneInfo("UTC"))):
                return False
        return all(_holds(getattr(report, f, None), c) for f, c in self.match.items())


class Tier(BaseModel):
    """One escalation step after a missed deadline."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    notify: Literal["backups"] | list[str]
    ack_within: str

    @model_validator(mode="after")
    def _check(self) -> Tier:
        parse_duration(self.ack_within)
        if isinstance(self.notify, list):
            if not self.notify:
                raise ValueError("an escalation tier must notify someone")
            for role in self.notify:
                if role not in KNOWN_ROLES:
                    raise ValueError(
                        f'undefined role "{role}" in an escalation tier '
                        f'(known: {", ".join(KNOWN_ROLES)}, or "backups")'
                    )
        return self

    @property
    def timeout(self) -> timedelta:
        """How long this tier waits before the next one."""
        return parse_duration(self.ack_within)


class EscalationPolicy(BaseModel):
    """After a deadline passes without the required acknowledgements: tier 1, tier 2, …
    then, with `repeat_every`, the last tier again until acknowledged or resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tiers: list[Tier] = Field(default_factory=list)
    repeat_every: str | None = None
    max_repeats: int = Field(default=12, ge=0)

    @model_validator(mode="after")
    def _check(self) -> EscalationPolicy:
        if self.repeat_every is not None:
            parse_duration(self.repeat_every)
            if not self.tiers:
                raise ValueError("repeat_every needs at least one tier to repeat")
        return self

    def tier(self, n: int) -> tuple[Tier, timedelta] | None:
        """Tier n (1-based) and the time allowed to acknowledge it; None past the end."""
        if 1 <= n <= len(self.tiers):
            return self.tiers[n - 1], self.tiers[n - 1].timeout
        if self.repeat_every and self.tiers and n <= len(self.tiers) + self.max_repeats:
            return self.tiers[-1], parse_duration(self.repeat_every)
        return None


class Pattern(BaseModel):
    """N or more encounters (at different schools, by default) within a window."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")]
    min_encounters: int = Field(ge=2)
    within: str
    distinct_schools: bool = True
    notify: list[str] = Field(min_length=1)
    severity: Severity = "critical"

    @model_validator(mode="after")
    def _check(self) -> Pattern:
        parse_duration(self.within)
        for role in self.notify:
            if role not in DISTRICT_ROLES:
                raise ValueError(
                    f'pattern "{self.name}" notifies "{role}": a pattern spans '
                    f"schools, so only district roles ({', '.join(DISTRICT_ROLES)})"
                )
        return self

    @property
    def window(self) -> timedelta:
        """The pattern's time window."""
        return parse_duration(self.within)


def _field_values(field: str) -> tuple[type | None, set[Any] | None]:
    info = EncounterReport.model_fields[field]
    ann = info.annotation
    if isinstance(ann, type) and issubclass(ann, Enum):
        return ann, {m.value for m in ann}
    if ann is bool:
        return bool, {True, False}
    return None, None


def _check_condition(where: str, field: str, cond: Condition) -> None:
    if field not in EncounterReport.model_fields:
        known = ", ".join(EncounterReport.model_fields)
        raise ValueError(f'{where} matches on "{field}", which is not a report field ({known})')
    values = cond.in_ if isinstance(cond, InList) else [cond]
    _, allowed = _field_values(field)
    if allowed is None:
        ann = EncounterReport.model_fields[field].annotation
        want = int if ann is int or "int" in str(ann) else str
        for value in values:
            if type(value) is not want:
                raise ValueError(
                    f"{where}: {field} is {want.__name__}, so {value!r} can never match"
                )
        return
    for value in values:
        if value not in allowed or (
            isinstance(value, bool) != isinstance(next(iter(allowed)), bool)
        ):
            raise ValueError(
                f"{where}: {field} can never be {value!r} "
                f"(allowed: {', '.join(str(a) for a in sorted(allowed, key=str))})"
            )


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _holds(value: Any, cond: Condition) -> bool:
    if value is None:
        return False  # a missing field never matches
    value = _plain(value)
    if isinstance(cond, InList):
        return any(value == c and type(value) is type(c) for c in cond.in_)
    return value == cond and type(value) is type(cond)


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1]
    timezone: str = "UTC"
    routes: list[Route] = Field(min_length=1)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    patterns: list[Pattern] = Field(default_factory=list)

    @property
    def tz(self) -> ZoneInfo:
        """The rules' timezone."""
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _reachable(self) -> Rules:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown timezone "{self.timezone}" (e.g. America/Chicago)') from None
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate route names: {', '.join(dupes)}")
        for i, route in enumerate(self.routes):
            catch_all = not route.match and route.when is None
            if catch_all and not route.continue_ and i < len(self.routes) - 1:
                later = self.routes[i + 1].name
                raise ValueError(
                    f'route "{later}" is unreachable: route "{route.name}" matches every '
                    f"report and does not continue"
                )
        return self

    def matching(self, report: EncounterReport) -> list[Route]:
        """Routes that fire for a report: first match wins unless it says `continue`."""
        out = []
        tz = self.tz
        for route in self.routes:
            if route.matches(report, tz):
                out.append(route)
                if not route.continue_:
                    break
        return out

    def warnings(self) -> list[str]:
        """Things that load but are probably mistakes, shown by `dooralert rules check`."""
        out = []
        last = self.routes[-1]
        if last.match or last.when is not None:
            out.append(
                f'the last route "{last.name}" is not a catch-all (match: {{}}): '
                "a report that matches nothing alerts only law and safety"
            )
        if any(r.require_ack for r in self.routes) and not self.escalation.tiers:
            out.append(
                "routes require acknowledgements but no escalation tiers are defined: "
                "a missed deadline is recorded and nobody else is told"
            )
        return out


def load_rules(path: Path) -> Rules:
    """`rules.yaml` (or the one in directory `path`), validated whole (`ConfigError` says what
    is wrong)."""
    if path.is_dir():
        path = path / "rules.yaml"
    return load_yaml_model(path, Rules)


__all__ = ["ConfigError", "Route", "Rules", "load_rules", "parse_duration"]
