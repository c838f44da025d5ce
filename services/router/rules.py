"""`rules.yaml`: load, validate in full, match (pure). DESIGN §5.

Validation happens once, at load, against the report model and the directory's roles, so
the engine only walks data it can trust. A field missing from a report never matches.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.events import Severity
from schemas.report import EncounterReport
from services.common.config import ConfigError, load_yaml_model
from services.common.directory import KNOWN_ROLES

Scalar = str | int | bool
_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_UNITS = {"s": 1, "m": 60, "h": 3600}
SEVERITY_ORDER: dict[str, int] = {"info": 0, "high": 1, "critical": 2}


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f'bad duration "{text}": write a positive number and s, m or h, e.g. 2m')
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


class InList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    in_: list[Scalar] = Field(alias="in", min_length=1)


Condition = Scalar | InList


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    match: dict[str, Condition]
    notify: list[str] = Field(min_length=1)
    require_ack: list[str] = Field(default_factory=list)
    ack_within: str | None = None
    severity: Severity = "high"
    continue_: bool = Field(default=False, alias="continue")

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
        return parse_duration(self.ack_within) if self.ack_within else None

    def matches(self, report: EncounterReport) -> bool:
        return all(_holds(getattr(report, f, None), c) for f, c in self.match.items())


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
        return
    for value in values:
        if value not in allowed or (isinstance(value, bool) != isinstance(next(iter(allowed)), bool)):
            raise ValueError(
                f'{where}: {field} can never be {value!r} '
                f'(allowed: {", ".join(str(a) for a in sorted(allowed, key=str))})'
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
    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _reachable(self) -> Rules:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate route names: {', '.join(dupes)}")
        for i, route in enumerate(self.routes):
            if not route.match and not route.continue_ and i < len(self.routes) - 1:
                later = self.routes[i + 1].name
                raise ValueError(
                    f'route "{later}" is unreachable: route "{route.name}" matches every '
                    f"report and does not continue"
                )
        return self

    def matching(self, report: EncounterReport) -> list[Route]:
        """Routes that fire for a report: first match wins unless it says `continue`."""
        out = []
        for route in self.routes:
            if route.matches(report):
                out.append(route)
                if not route.continue_:
                    break
        return out

    def warnings(self) -> list[str]:
        if self.routes[-1].match:
            return [
                f'the last route "{self.routes[-1].name}" is not a catch-all (match: {{}}): '
                "a report that matches nothing alerts only law and safety"
            ]
        return []


def load_rules(path: Path) -> Rules:
    if path.is_dir():
        path = path / "rules.yaml"
    return load_yaml_model(path, Rules)


__all__ = ["ConfigError", "Route", "Rules", "load_rules", "parse_duration"]
