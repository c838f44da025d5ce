"""`dooralert rules check` and `rules explain` as an operator uses them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from services.cli.main import app
from tests.support import EXAMPLES, report

runner = CliRunner()


def test_check_accepts_the_example_rules() -> None:
    result = runner.invoke(app, ["rules", "check", str(EXAMPLES / "rules.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok, 4 routes" in result.output


def test_check_names_the_undefined_role_and_route(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "version: 1\nroutes:\n  - name: forced-entry\n    match: {}\n    notify: [lawyer]\n"
    )
    result = runner.invoke(app, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert 'undefined role "lawyer" in route "forced-entry"' in result.output


def test_check_rejects_bad_duration_and_unknown_field(tmp_path: Path) -> None:
    for body, message in [
        (
            "match: {}\n    notify: [law]\n    require_ack: [law]\n    ack_within: soon",
            'bad duration "soon"',
        ),
        ("match: {colour: red}\n    notify: [law]", '"colour", which is not a report field'),
    ]:
        path = tmp_path / "rules.yaml"
        path.write_text(f"version: 1\nroutes:\n  - name: r\n    {body}\n")
        result = runner.invoke(app, ["rules", "check", str(path)])
        assert result.exit_code == 1 and message in result.output, result.output


def test_check_warns_about_roles_without_contacts(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "district.yaml", tmp_path / "district.yaml")
    text = (
        (EXAMPLES / "district.yaml")
        .read_text()
        .replace("  leadership: [chief-of-schools]\n", "  leadership: []\n")
    )
    (tmp_path / "district.yaml").write_text(text)
    (tmp_path / "rules.yaml").write_text(
        "version: 1\nroutes:\n  - name: r\n    match: {}\n    notify: [leadership]\n"
    )
    result = runner.invoke(app, ["rules", "check", str(tmp_path / "rules.yaml")])
    assert result.exit_code == 0
    assert 'role "leadership" has no contact' in result.output


def test_explain_shows_routes_and_recipients_without_sending(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report(document="court_order", purpose="student")))
    result = runner.invoke(
        app, ["rules", "explain", str(EXAMPLES / "rules.yaml"), "--report", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert "judicial-document, student-sought" in result.output
    assert "critical" in result.output and "liaison-hamline" in result.output


def test_explain_refuses_an_invalid_report(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report(immigration_status="x")))
    result = runner.invoke(
        app, ["rules", "explain", str(EXAMPLES / "rules.yaml"), "--report", str(path)]
    )
    assert result.exit_code == 1 and "immigration_status" in result.output
