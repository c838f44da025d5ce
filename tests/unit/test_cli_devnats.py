"""`dooralert dev` runs NATS with deploy/nats/server.conf's users: the same file as a deployment
(found through the package, so an installed dooralert has it too), a generated password per
user kept in the data directory, and each service connected as its own user."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.cli import dev as launcher
from services.cli.devnats import (
    NATS_GO_PROCS,
    SERVICE_USERS,
    DevNatsError,
    config_users,
    prepare,
    server_config,
    user_passwords,
)
from tests.support import EXAMPLES, REPO

DEPLOY_NATS = REPO / "deploy" / "nats"
USERS = {"admin", "intake", "router", "notifier", "ledger", "auditor"}


def test_dev_runs_the_very_files_in_deploy_nats() -> None:
    packaged = server_config().parent
    # One copy: a checkout without symlinks (or a stale copy) would show up here.
    for conf in sorted(DEPLOY_NATS.glob("*.conf")):
        assert (packaged / conf.name).read_bytes() == conf.read_bytes(), conf.name


def test_every_user_of_the_deployed_config_is_found_with_its_password_variable() -> None:
    users = config_users(server_config())
    assert set(users) == USERS
    assert users["intake"] == "DOORALERT_NATS_INTAKE_PASSWORD"


def test_users_are_found_through_includes_but_not_in_comments(tmp_path: Path) -> None:
    (tmp_path / "server.conf").write_text(
        "# {user: ghost, password: $GHOST}\ninclude ./users.conf\n"
    )
    (tmp_path / "users.conf").write_text(
        "accounts { A { users: [\n  {user: admin, password: $ADMIN_PW}\n] } }\n"
    )
    assert config_users(tmp_path / "server.conf") == {"admin": "ADMIN_PW"}


def test_passwords_are_made_once_private_and_kept_across_restarts(tmp_path: Path) -> None:
    first = user_passwords(tmp_path, ["admin", "intake"])
    folder = tmp_path / "nats-users"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((folder / u).stat().st_mode) == 0o600 for u in first)
    assert len(set(first.values())) == 2
    assert all(p.isalnum() and len(p) >= 40 for p in first.values())
    (folder / "admin").chmod(0o644)  # a careless copy: tightened again on start
    assert user_passwords(tmp_path, ["admin", "intake"]) == first
    assert stat.S_IMODE((folder / "admin").stat().st_mode) == 0o600


def test_a_config_without_a_service_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "server.conf").write_text("users: [{user: admin, password: $ADMIN_PW}]\n")
    with pytest.raises(DevNatsError, match="defines no user intake, ledger, notifier, router"):
        prepare(tmp_path / "data", host="127.0.0.1", port=4222, config=tmp_path / "server.conf")


def test_each_service_connects_as_its_own_user_knowing_no_other_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOORALERT_NATS_ADMIN_PASSWORD", "from-the-callers-shell")
    opts = launcher.DevOptions(
        data_dir=tmp_path, http_port=1, smtp_port=2, nats_port=4333, config_dir=EXAMPLES
    )
    server = prepare(tmp_path, host="127.0.0.1", port=4333)
    nats, smtp, services = launcher.children(opts, launcher.child_env(opts), server)

    assert nats.argv[1:3] == ["-c", str(server_config())]
    assert {nats.env[f"DOORALERT_NATS_{u.upper()}_PASSWORD"] for u in USERS} == set(
        server.passwords.values()
    )
    for child in services:
        user = SERVICE_USERS[child.name]
        url = child.env["DOORALERT_NATS_URL"]
        assert url == f"nats://{user}:{server.passwords[user]}@127.0.0.1:4333"
        others = [p for u, p in server.passwords.items() if u != user]
        assert not any(p in v for v in child.env.values() for p in others), child.name
        assert not any(k.endswith("_PASSWORD") for k in child.env if k.startswith("DOORALERT_"))
    assert [c.name for c in services] == ["intake", "router", "notifier", "ledger"]
    assert not any(p in v for v in smtp.env.values() for p in server.passwords.values())

    text = launcher.banner(opts, verifier="key", nats=server)
    assert str(tmp_path / "nats-users") in text
    assert not any(p in text for p in server.passwords.values())


def test_dev_runs_nats_server_on_one_go_thread_unless_the_caller_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    opts = launcher.DevOptions(
        data_dir=tmp_path, http_port=1, smtp_port=2, nats_port=4333, config_dir=EXAMPLES
    )
    server = prepare(tmp_path, host="127.0.0.1", port=4333)
    nats, _, _ = launcher.children(opts, launcher.child_env(opts), server)
    # deploy/one-machine.md: nats-server shares the machine with the services.
    assert nats.env["GOMAXPROCS"] == str(NATS_GO_PROCS) == "1"
    assert "GOMAXPROCS" not in server.server_env({}, go_procs=0)  # Go's default: per core
    assert server.server_env({}, go_procs=3)["GOMAXPROCS"] == "3"
    assert server.server_env({"GOMAXPROCS": "2"})["GOMAXPROCS"] == "2"  # an operator's wins

    monkeypatch.setenv("GOMAXPROCS", "2")
    nats, _, _ = launcher.children(opts, launcher.child_env(opts), server)
    assert nats.env["GOMAXPROCS"] == "2"
