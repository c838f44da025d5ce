"""Loading YAML config files into pydantic models with errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A config file is missing or invalid; the message says where and why."""


def describe_errors(exc: ValidationError) -> list[str]:
    """A pydantic error as `where: what` lines a person can act on."""
    out = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        out.append(f"{where}: {err['msg']}")
    return out


def load_yaml_model(path: Path, model: type[M]) -> M:
    """A YAML file validated as `model`; `ConfigError` names the file and each problem."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = "\n  ".join(describe_errors(exc))
        raise ConfigError(f"{path}: invalid:\n  {lines}") from exc
