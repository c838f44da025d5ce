"""Nothing can silently stop an alert: a client follows a failover with its credentials, a
service whose NATS connection is closed for good exits non-zero (its supervisor restarts it),
and a command refused by NATS says so and exits 2 within seconds. Real nats-servers with the
deployment's users; the services and commands run as the `dooralert` processes they are."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from services.audit.note import Signer, write_signing_key
from services.cli.dev import nats_server_binary
from services.eventlog import connect, provision
from tests.integration.test_nats_permissions import CONFIG, USERS, ConfiguredNatsServer
from tests.support import EXAMPLES, REPO, TEST_SECRET, eventually, free_port, free_ports

PASSWORDS = {u: f"pw-{u}-{os.getpid()}" for u in USERS}


class UsersCluster:
    """Two routed nodes with the deployment's accounts and users, advertising each other to
    clients (as a default nats-server does: the setting the container test was bitten by)."""

    def __init__(self, root: Path) -> None:
        shutil.copy(CONFIG.parent / "accounts.conf", root / "accounts.conf")
        client, route = free_ports(2), free_ports(2)
        self.ports = client
        self.procs: list[subprocess.Popen[bytes]] = []
        self.confs = []
        for i in range(2):
            conf = root / f"n{i}.conf"
            conf.write_text(
                f'server_name: n{i}\nlisten: "127.0.0.1:{client[i]}"\n'
                f'jetstream {{ store_dir: "{root / f"store{i}"}" }}\n'
                f'cluster {{ name: dooralert, listen: "127.0.0.1:{route[i]}", '
                f'routes: ["nats://127.0.0.1:{route[1 - i]}"] }}\n'
                "include ./accounts.conf\n"
            )
            self.confs.append(conf)

    def start(self) -> None:
        env = {
            **os.environ,
            **{f"DOORALERT_NATS_{u.upper()}_PASSWORD": p for u, p in PASSWORDS.items()},
        }
        for conf in self.confs:
            self.procs.append(
                subprocess.Popen(
                    [nats_server_binary(), "-c", str(conf)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def url(self, node: int, user: str) -> str:
        return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{self.ports[node]}"

    def kill(self, node: int) -> None:
        self.procs[node].kill()
        self.procs[node].wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[UsersCluster]:
    c = UsersCluster(tmp_path)
    c.start()
    yield c
    c.stop()


async def test_a_client_follows_the_cluster_to_an_advertised_node_with_its_credentials(
    cluster: UsersCluster,
) -> None:
    async def up() -> bool:
        try:
            probe = await nats.connect(cluster.url(1, "admin"), allow_reconnect=False)
        except Exception:  # noqa: BLE001 - not listening yet
            return False
        await probe.close()
        return True

    await eventually(up, timeout=10)
    # Only node 0 is named: node 1 is learned from the cluster's INFO, as in the container test.
    nc = await connect(cluster.url(0, "admin"), name="test-failover")
    try:
        await eventually(lambda: len(nc.servers) == 2, timeout=10)

        async def echo(msg: Msg) -> None:
            await msg.respond(b"pong")

        sub = await nc.subscribe("probe.echo", cb=echo)
        assert (await nc.request("probe.echo", b"", timeout=2)).data == b"pong"
        cluster.kill(0)

        async def answered() -> bool:
            try:
                return (await nc.request("probe.echo", b"", timeout=0.5)).data == b"pong"
            except Exception:  # noqa: BLE001 - still failing over
                return False

        await eventually(answered, timeout=10, every=0.2)
        assert nc.is_connected and nc.connected_url is not None
        assert nc.connected_url.port == cluster.ports[1]
        await sub.unsubscribe()
    finally:
        await nc.close()


def _dooralert(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _service_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DOORALERT_NATS_URL": url,
        "DOORALERT_CONFIG_DIR": str(EXAMPLES),
        "DOORALERT_SECRET_KEYS": TEST_SECRET,
        "DOORALERT_LOG_FORMAT": "json",
        "DOORALERT_METRICS_PORT": str(free_port()),
        "DOORALERT_HTTP_PORT": str(free_port()),
        "DOORALERT_CONSUMER_CHECK_SECONDS": "1",
        **extra,
    }


def _ready(env: dict[str, str]) -> bool:
    url = f"http://127.0.0.1:{env['DOORALERT_METRICS_PORT']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def _provisioned(server: ConfiguredNatsServer) -> None:
    admin = await nats.connect(server.url_for("admin"))
    try:
        await provision(admin.jetstream())
    finally:
        await admin.close()


def _exit_within(proc: subprocess.Popen[str], seconds: float) -> tuple[int, str, float]:
    start = time.monotonic()
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running {seconds} s after losing NATS:\n{err[-3000:]}")
    return proc.returncode, err, time.monotonic() - start


@pytest.mark.parametrize(("command", "user"), [("router", "router"), ("intake", "intake")])
async def test_a_service_refused_by_nats_after_a_restart_exits_non_zero(
    command: str, user: str, tmp_path: Path
) -> None:
    server = ConfiguredNatsServer(store=tmp_path / "nats")
    server.start()
    proc = None
    try:
        await _provisioned(server)
        old_password = server.passwords[user]
        env = _service_env(server.url_for(user), tmp_path)
        proc = _dooralert(command, env=env)
        await eventually(lambda: _ready(env), timeout=20, every=0.2)
        # The operator rotates the service's password on the server only.
        server.stop()
        server.passwords[user] = "rotated-" + old_password
        server.start()
        code, err, took = await asyncio.to_thread(_exit_within, proc, 15)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    assert code == 4, err[-3000:]
    assert '"event": "nats.connection_closed"' in err
    assert "refused the credentials" in err
    assert old_password not in err
    assert took < 10


async def test_the_ledger_exits_non_zero_when_reconnecting_gives_up(tmp_path: Path) -> None:
    server = ConfiguredNatsServer(store=tmp_path / "nats")
    server.start()
    proc = None
    try:
        await _provisioned(server)
        key = tmp_path / "log.key"
        write_signing_key(key, Signer.generate("dooralert.example/test"))
        env = _service_env(
            server.url_for("ledger"),
            tmp_path,
            DOORALERT_LOG_KEY_FILE=str(key),
            DOORALERT_CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
            DOORALERT_NATS_RECONNECT_ATTEMPTS="3",
        )
        proc = _dooralert("audit", "serve", env=env)
        await eventually(lambda: _ready(env), timeout=20, every=0.2)
        server.stop()  # and it does not come back
        code, err, _ = await asyncio.to_thread(_exit_within, proc, 20)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    assert code == 4, err[-3000:]
    assert '"event": "nats.connection_closed"' in err and "gave up" in err
    assert server.passwords["ledger"] not in err


async def test_audit_replay_with_a_wrong_password_exits_2_within_seconds(tmp_path: Path) -> None:
    server = ConfiguredNatsServer(store=tmp_path / "nats")
    server.start()
    try:
        await _provisioned(server)
        wrong = f"nats://auditor:not-the-password@127.0.0.1:{server.port}"
        start = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli.main", "audit", "replay"],
            cwd=REPO,
            env={**os.environ, "DOORALERT_NATS_URL": wrong, "DOORALERT_LOG_FORMAT": "json"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        took = time.monotonic() - start
    finally:
        server.stop()
    assert done.returncode == 2, done.stderr
    assert "dooralert: NATS refused the credentials of" in done.stderr
    assert "'auditor'" in done.stderr and "not-the-password" not in done.stderr
    assert took < 8


def test_a_command_with_no_server_to_reach_exits_2_within_seconds() -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "replay"],
        cwd=REPO,
        env={
            **os.environ,
            "DOORALERT_NATS_URL": f"nats://auditor:secret-pw@127.0.0.1:{free_port()}",
            "DOORALERT_LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach NATS at" in done.stderr and "secret-pw" not in done.stderr
    assert time.monotonic() - start < 8
