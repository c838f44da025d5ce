"""deploy/prometheus and deploy/grafana: the alert rules load (`promtool check rules`), each
alert fires on the failure it is for and stays quiet on a healthy system (`promtool test
rules`), and the rules and the dashboard name only metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from services.runtime import metrics
from tests.support import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dooralert.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package `prometheus`; `make test` installs it as root)",
)
# Names an expression may use besides our metrics: Prometheus's own series.
BUILTIN = {"up"}
_NAME = re.compile(r"\b(dooralert_[a-z_]+|up)\b(?!\s*\()")


def metric_objects() -> list[Any]:
    """The metric objects services/runtime/metrics.py defines."""
    return [
        m
        for m in vars(metrics).values()
        if isinstance(m, (Counter, Gauge, Histogram)) and m._name.startswith("dooralert_")
    ]


def exported() -> set[str]:
    """Every series name the services expose (counters' _total, histograms' _bucket/...)."""
    names: set[str] = set()
    for m in metric_objects():
        if isinstance(m, Counter):
            names.add(m._name + "_total")
        elif isinstance(m, Histogram):
            names.update(m._name + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(m._name)
    return names


def rule_exprs() -> list[str]:
    doc = yaml.safe_load((PROMETHEUS / "rules.yaml").read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def unknown_metrics(exprs: list[str]) -> set[str]:
    named = {m for e in exprs for m in _NAME.findall(e)}
    return named - exported() - BUILTIN


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_the_alert_rules_load() -> None:
    done = promtool("check", "rules", "rules.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_each_alert_fires_on_its_failure_and_not_on_a_healthy_system() -> None:
    done = promtool("test", "rules", "rules.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_example_scrape_config_loads_with_the_rules() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_the_issue_asks_for_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules.yaml").read_text())
    tests: dict[str, Any] = yaml.safe_load((PROMETHEUS / "rules.test.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    for wanted in (
        "DooralertConsumerStalled",
        "DooralertNotificationsFailing",
        "DooralertNoCheckpoint",
        "DooralertServiceDown",
        "DooralertIntakeRefusingReports",
    ):
        assert wanted in alerts
    firing = {
        t["alertname"]
        for case in tests["tests"]
        for t in case["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert alerts - firing <= {
        "DooralertConsumerBacklog",
        "DooralertPipelineUnwatched",
        "DooralertNotificationGivenUp",
    }


def test_the_rules_name_only_metrics_the_services_export() -> None:
    assert unknown_metrics(rule_exprs()) == set()


def test_the_dashboard_is_valid_json_over_only_exported_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    assert unknown_metrics(exprs) == set()
    # Every metric the services export is on the dashboard somewhere.
    assert {m._name for m in metric_objects()} - {
        _stem(m) for e in exprs for m in _NAME.findall(e)
    } == set()


def _stem(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum)$", "", name)


def test_a_misspelt_metric_would_be_caught() -> None:
    assert unknown_metrics(["rate(dooralert_notification_sent_total[5m])"]) == {
        "dooralert_notification_sent_total"
    }


def test_no_metric_label_can_carry_a_contact_or_staff_member() -> None:
    # A school id, a role, a channel, a kind, a consumer: never a contact, a name, an address.
    allowed = {"via", "reason", "role", "consumer", "school", "tier", "channel", "kind"}
    allowed |= {"outcome", "service"}
    labels = {label for m in metric_objects() for label in m._labelnames}
    assert labels <= allowed
    assert "role" in labels and "school" in labels  # the check sees the labels
