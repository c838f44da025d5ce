"""Which district `dooralert dev` runs: --config-dir, else DOORALERT_CONFIG_DIR, else the demo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import dev as launcher
from services.cli.main import app
from services.runtime.settings import EXAMPLE_CONFIG_DIR
from tests.support import EXAMPLES

runner = CliRunner()


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[launcher.DevOptions]:
    """The options `dev` hands the launcher, which starts nothing."""
    calls: list[launcher.DevOptions] = []

    def run_dev(opts: launcher.DevOptions) -> int:
        calls.append(opts)
        return 0

    monkeypatch.setattr(launcher, "run_dev", run_dev)
    return calls


def district(path: Path) -> Path:
    shutil.copytree(EXAMPLES, path)
    return path


def test_dev_runs_the_district_in_DOORALERT_CONFIG_DIR(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launched: list[launcher.DevOptions]
) -> None:
    config = district(tmp_path / "district")
    monkeypatch.setenv("DOORALERT_CONFIG_DIR", str(config))
    result = runner.invoke(app, ["dev", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    [opts] = launched
    assert opts.config_dir == config.resolve()
    assert f"district config {config.resolve()} (from DOORALERT_CONFIG_DIR)" in result.output
    # Every service the launcher starts is told the same district.
    opts.data_dir.mkdir(parents=True)
    assert launcher.child_env(opts)["DOORALERT_CONFIG_DIR"] == str(config.resolve())


def test_config_dir_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launched: list[launcher.DevOptions]
) -> None:
    monkeypatch.setenv("DOORALERT_CONFIG_DIR", str(district(tmp_path / "from-env")))
    chosen = district(tmp_path / "chosen")
    result = runner.invoke(app, ["dev", "--config-dir", str(chosen)])
    assert result.exit_code == 0, result.output
    assert launched[0].config_dir == chosen.resolve()
    assert "(from --config-dir)" in result.output


def test_without_either_dev_runs_the_example_district(
    monkeypatch: pytest.MonkeyPatch, launched: list[launcher.DevOptions]
) -> None:
    monkeypatch.delenv("DOORALERT_CONFIG_DIR", raising=False)
    result = runner.invoke(app, ["dev"])
    assert result.exit_code == 0, result.output
    assert launched[0].config_dir == EXAMPLE_CONFIG_DIR.resolve()
    assert "(from the example district)" in result.output


def test_dev_refuses_a_config_dir_without_a_district(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launched: list[launcher.DevOptions]
) -> None:
    monkeypatch.setenv("DOORALERT_CONFIG_DIR", str(tmp_path))
    result = runner.invoke(app, ["dev"])
    assert result.exit_code == 2
    assert "refusing to start" in result.output and "district.yaml" in result.output
    assert launched == []
