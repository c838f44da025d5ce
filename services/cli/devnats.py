"""NATS for `dooralert dev`: the deployment's own server config (deploy/nats/server.conf and
what it includes: the users and their permissions), a generated password per user kept in the
data directory, and a URL per service as its own user. Daily use thus runs under the same
least privilege as production, and a permission a service lacks shows up at once.

The config is found through the package (`services/cli/nats` links to deploy/nats; building a
wheel copies the files in), so an installed dooralert runs the same file as a checkout.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

# `{user: intake, password: $DOORALERT_NATS_INTAKE_PASSWORD, ...}`
_USER = re.compile(r"user:\s*([A-Za-z0-9_-]+)\s*,\s*password:\s*\$([A-Za-z0-9_]+)")
_INCLUDE = re.compile(r"^\s*include\s+['\"]?([^'\"\s;]+)", re.MULTILINE)
# Which user each process of `dooralert dev` connects as.
SERVICE_USERS = {"intake": "intake", "router": "router", "notifier": "notifier", "ledger": "ledger"}


class DevNatsError(Exception):
    """The packaged NATS config is missing or lacks a user dev needs."""


def server_config() -> Path:
    """deploy/nats/server.conf as this installation carries it."""
    path = files("services.cli").joinpath("nats", "server.conf")
    if not isinstance(path, Path) or not path.is_file():
        raise DevNatsError(
            f"no NATS server config at {path}: reinstall dooralert "
            "(services/cli/nats links to deploy/nats in a checkout)"
        )
    return path


def config_users(config: Path) -> dict[str, str]:
    """Each user the config defines, with the environment variable its password comes from
    (following `include`s relative to the including file)."""
    users: dict[str, str] = {}
    seen: set[Path] = set()

    def scan(path: Path) -> None:
        if path in seen:
            return
        seen.add(path)
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        users.update(dict(_USER.findall(text)))
        for name in _INCLUDE.findall(text):
            scan((path.parent / name).resolve())

    scan(config)
    return users


# nats-server on the machine that also runs the services (dev, the benchmarks,
# deploy/one-machine.md): Go's scheduler on one thread. With its default of one per core, each
# message that woke the server also woke idle threads spinning for work: on the 2-core bench
# machine nats-server took 1.4-1.7x the CPU per email (0.42-0.84 against 0.30-0.49 ms in
# `make bench`'s burst, 4 alternating runs), CPU the Python services on the alert path needed.
# One core of nats-server carries far more than a district's alerts.
NATS_GO_PROCS = 1


def user_passwords(data_dir: Path, users: list[str]) -> dict[str, str]:
    """A password per user, made once and kept in `<data>/nats-users/<user>` (mode 0600 in a
    0700 directory), so a restart keeps the same ones."""
    folder = data_dir / "nats-users"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    out = {}
    for user in users:
        path = folder / user
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                # Letters and digits only: safe in a nats:// URL and in the config's variables.
                f.write("dev" + secrets.token_hex(24))
        path.chmod(0o600)
        out[user] = path.read_text().strip()
    return out


@dataclass(frozen=True)
class DevNats:
    """The dev nats-server's config, its users' passwords and where it listens."""

    config: Path
    host: str
    port: int
    password_dir: Path
    env_names: dict[str, str] = field(repr=False)  # user -> password variable
    passwords: dict[str, str] = field(repr=False)  # user -> password

    @property
    def url(self) -> str:
        """The server's URL without credentials (for display)."""
        return f"nats://{self.host}:{self.port}"

    def url_for(self, user: str) -> str:
        """The URL a process connecting as `user` uses."""
        return f"nats://{user}:{self.passwords[user]}@{self.host}:{self.port}"

    def server_env(self, base: dict[str, str], *, go_procs: int = NATS_GO_PROCS) -> dict[str, str]:
        """nats-server's environment: the config reads every password from it, and Go runs
        it on `go_procs` threads at once (GOMAXPROCS; 0: Go's default of one per core; a
        GOMAXPROCS in `base` wins)."""
        procs = {"GOMAXPROCS": str(go_procs)} if go_procs > 0 else {}
        return {
            **procs,
            **base,
            **{self.env_names[u]: p for u, p in self.passwords.items()},
        }

    def server_args(self, binary: str, store: Path) -> list[str]:
        """The nats-server command line: the config, with dev's address, port and store."""
        return [
            binary,
            "-c",
            str(self.config),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(store),
            "-n",
            "dooralert-dev",
        ]


def prepare(data_dir: Path, *, host: str, port: int, config: Path | None = None) -> DevNats:
    """The dev server's config and a password for each of its users (made on first use)."""
    config = config or server_config()
    env_names = config_users(config)
    missing = sorted({"admin", *SERVICE_USERS.values()} - env_names.keys())
    if missing:
        raise DevNatsError(f"{config} defines no user {', '.join(missing)}")
    passwords = user_passwords(data_dir, sorted(env_names))
    return DevNats(
        config=config,
        host=host,
        port=port,
        password_dir=data_dir / "nats-users",
        env_names=env_names,
        passwords=passwords,
    )


def without_nats_passwords(env: dict[str, str]) -> dict[str, str]:
    """`env` without any user's NATS password: a service gets only its own URL."""
    return {k: v for k, v in env.items() if not re.fullmatch(r"DOORALERT_NATS_\w+_PASSWORD", k)}
