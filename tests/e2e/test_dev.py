"""The system as a user runs it: `dooralert dev`, a report over HTTP, emails, `audit replay`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from nats import connect as nats_connect
from nats.errors import Error as NatsError

from tests.support import EXAMPLES, HAMLINE_KEY, REPO, free_ports, report


def wait_for(check, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


async def connect_once(url: str) -> None:
    connecting = nats_connect(url, allow_reconnect=False, max_reconnect_attempts=0)
    nc = await asyncio.wait_for(connecting, 10)
    await nc.close()


def port_closed(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return False
    except OSError:
        return True


def test_dev_runs_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    http, smtp, nats = free_ports(3)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORALERT_")}
    env["DOORALERT_CHECKPOINT_SECONDS"] = "1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "dev",
            "--data-dir",
            str(data),
            "--http-port",
            str(http),
            "--smtp-port",
            str(smtp),
            "--nats-port",
            str(nats),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = []
        assert proc.stdout is not None
        for line in proc.stdout:
            banner.append(line)
            if "Press Ctrl-C" in line or proc.poll() is not None:
                break
        text = "".join(banner)
        assert f"http://127.0.0.1:{http}/" in text, text
        assert HAMLINE_KEY in text and str(data / "outbox") in text

        base = f"http://127.0.0.1:{http}"
        resp = httpx.post(
            f"{base}/api/v1/encounters",
            json=report(),
            headers={"Authorization": f"Bearer {HAMLINE_KEY}"},
            timeout=10,
        )
        assert resp.status_code == 202, resp.text
        incident_id = resp.json()["incident_id"]

        outbox = data / "outbox"
        emls = wait_for(
            lambda: (lambda f: f if len(f) >= 4 else None)(sorted(outbox.glob("*.eml"))), timeout=20
        )
        messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in emls]
        assert {m["To"] for m in messages} == {
            "law-oncall@district.example",
            "deputy-counsel@district.example",
            "safety-desk@district.example",
            "principal@hamline.district.example",
        }
        assert all(m["X-Dooralert-Incident"] == incident_id for m in messages)

        wait_for(
            lambda: all(
                n["status"] == "sent"
                for n in httpx.get(resp.json()["status_url"], timeout=10).json()["notifications"]
            ),
            timeout=10,
        )
        status = httpx.get(resp.json()["status_url"], timeout=10).json()
        assert status["incident_id"] == incident_id

        # NATS runs with deploy/nats/server.conf's users: an auditor reads the log with the
        # password dev generated for it, and nobody gets in without one.
        users = data / "nats-users"
        assert {p.name for p in users.iterdir()} >= {"admin", "intake", "router", "auditor"}
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in users.iterdir())
        assert not any(p.read_text().strip() in text for p in users.iterdir())
        auditor = (users / "auditor").read_text().strip()
        cli_env = {**env, "DOORALERT_NATS_URL": f"nats://auditor:{auditor}@127.0.0.1:{nats}"}
        with pytest.raises(NatsError, match="Authorization Violation"):
            asyncio.run(connect_once(f"nats://127.0.0.1:{nats}"))
        with pytest.raises(NatsError, match="Authorization Violation"):
            asyncio.run(connect_once(f"nats://auditor:wrong@127.0.0.1:{nats}"))
        replay = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli.main",
                "audit",
                "replay",
                "--incident",
                incident_id,
            ],
            cwd=REPO,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert replay.returncode == 0, replay.stderr
        assert "encounter.reported" in replay.stdout and "notification.sent" in replay.stdout
        assert "4 sent, 0 failed" in replay.stdout

        as_json = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "audit", "replay", "--json"],
            cwd=REPO,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        doc = json.loads(as_json.stdout.splitlines()[0])
        # Replay folds the same events with the same code: exactly the live state.
        assert doc["state"] == status

        # The ledger signs checkpoints; an auditor exports and verifies the log offline.
        key_line = next(line.split()[-1] for line in banner if "log key" in line)
        wait_for(lambda: list((data / "checkpoints").glob("checkpoint-*.txt")), timeout=30)
        out = tmp_path / "export"
        export = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "audit", "export", "--out", str(out)],
            cwd=REPO,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert export.returncode == 0, export.stderr
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli.main",
                "audit",
                "verify",
                "--export",
                str(out),
                "--key",
                key_line,
            ],
            cwd=REPO,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    for port in (http, smtp, nats):
        assert port_closed(port), f"port {port} still open after Ctrl-C"


def test_dev_runs_the_district_named_by_DOORALERT_CONFIG_DIR(tmp_path: Path) -> None:
    http, smtp, nats = free_ports(3)
    config = tmp_path / "district"
    shutil.copytree(EXAMPLES, config)
    district = (config / "district.yaml").read_text()
    (config / "district.yaml").write_text(
        district.replace("id: demo-district", "id: testville").replace(
            "name: Hamline Elementary", "name: Testville Elementary"
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORALERT_")}
    env["DOORALERT_CONFIG_DIR"] = str(config)
    ports = ["--http-port", str(http), "--smtp-port", str(smtp), "--nats-port", str(nats)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "dev", "--data-dir", str(tmp_path), *ports],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = []
        assert proc.stdout is not None
        for line in proc.stdout:
            banner.append(line)
            if "Press Ctrl-C" in line or proc.poll() is not None:
                break
        text = "".join(banner)
        assert f"district config {config} (from DOORALERT_CONFIG_DIR)" in text, text
        # The launcher's ledger key and the intake's sign-in page both come from that district.
        assert "dooralert.example/testville" in text, text
        page = httpx.get(f"http://127.0.0.1:{http}/", timeout=10)
        assert "Testville Elementary" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
