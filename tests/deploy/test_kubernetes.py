"""deploy/kubernetes: every manifest is valid Kubernetes 1.30 (kubernetes-validate, strict), and
the deployment keeps the promises the README makes: only intake reachable from outside, one NATS
user per service, probes and resource requests everywhere, no secret values in the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.cli.dev import nats_server_binary
from tests.support import REPO

K8S = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
NATS_USERS = ["admin", "intake", "router", "notifier", "ledger", "auditor"]
# The dooralert workloads and the NATS user each one connects as.
SERVICE_USERS = {
    "intake": "intake",
    "router": "router",
    "notifier": "notifier",
    "ledger": "ledger",
    "provision": "admin",
}

Doc = dict[str, Any]


def kustomization() -> Doc:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())  # type: ignore[no-any-return]


def rendered() -> list[Doc]:
    """What `kubectl kustomize deploy/kubernetes` renders (resources, generated ConfigMaps)."""
    kust = kustomization()
    docs: list[Doc] = []
    for name in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    for gen in kust.get("configMapGenerator", []):
        data = {Path(f).name: (K8S / f).read_text() for f in gen["files"]}
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"]},
                "data": data,
            }
        )
    for doc in docs:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kust["namespace"]
    return docs


def of_kind(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in rendered() if d["kind"] == kind}


def workloads() -> dict[str, Doc]:
    """Deployments, the StatefulSet and the Job, by component label."""
    found = {}
    for doc in rendered():
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            found[doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]] = (
                doc
            )
    return found


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml")), ids=lambda p: str(p))
def test_every_manifest_is_valid_kubernetes(path: str) -> None:
    by_file = {name: [] for name in kustomization()["resources"]}  # type: dict[str, list[Doc]]
    if path == "kustomization.yaml":
        assert set(by_file) | {"secrets.example.yaml", "kustomization.yaml"} == {
            p.name for p in K8S.glob("*.yaml")
        }, "every manifest is listed in kustomization.yaml (or is the secrets template)"
        return
    docs = [d for d in yaml.safe_load_all((K8S / path).read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_generated_config_maps_are_valid_kubernetes() -> None:
    for doc in of_kind("ConfigMap").values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_an_invalid_manifest_is_refused_by_the_validator() -> None:
    # The validation above can fail: a misspelt field is an error in strict mode.
    deployment = of_kind("Deployment")["intake"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_nats_users_are_the_same_as_the_servers_everywhere_else() -> None:
    shared = (REPO / "deploy" / "nats" / "accounts.conf").read_text()
    assert (K8S / "nats" / "accounts.conf").read_text() == shared, (
        "deploy/kubernetes/nats/accounts.conf differs from deploy/nats/accounts.conf: copy it"
    )


def test_the_nats_node_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    config = of_kind("ConfigMap")["nats-config"]["data"]
    for name, text in config.items():
        (tmp_path / name).write_text(text)
    env = os.environ | {f"DOORALERT_NATS_{u.upper()}_PASSWORD": "x" for u in NATS_USERS}
    result = subprocess.run(
        [nats_server_binary(), "-c", str(tmp_path / "node.conf"), "-t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_only_intake_is_reachable_from_outside_the_namespace() -> None:
    policies = of_kind("NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    open_to_all = {
        name: p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for name, p in policies.items()
        for rule in p["spec"].get("ingress", [])
        if "from" not in rule
    }
    assert open_to_all == {"intake": "intake"}
    assert [r["ports"] for r in policies["intake"]["spec"]["ingress"]] == [
        [{"protocol": "TCP", "port": 8080}]
    ]
    # Nothing but dooralert pods reaches NATS; routes only from the other nodes.
    for rule in policies["nats"]["spec"]["ingress"]:
        assert rule["from"] and all(
            f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "dooralert"
            for f in rule["from"]
        )
    services = of_kind("Service")
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services.values())


def test_each_service_connects_to_nats_as_its_own_user() -> None:
    found = {}
    for component, workload in workloads().items():
        if component == "nats":
            continue
        container = pod_spec(workload)["containers"][0]
        env = env_of(container)
        key = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
        urls = env["DOORALERT_NATS_URL"]["value"].split(",")
        users = {u.removeprefix("nats://").split(":")[0] for u in urls}
        assert len(users) == 1 and len(urls) == 3, urls
        (user,) = users
        assert key == f"DOORALERT_NATS_{user.upper()}_PASSWORD"
        assert all("$(NATS_PASSWORD)@" in u for u in urls)
        found[component] = user
    assert found == SERVICE_USERS


def test_every_container_has_probes_requests_and_no_privileges() -> None:
    for component, workload in workloads().items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, component
        assert spec["automountServiceAccountToken"] is False, component
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["resources"]["requests"], component
            assert container["resources"]["limits"]["memory"], component
            sec = container["securityContext"]
            assert sec["allowPrivilegeEscalation"] is False, component
            assert sec["readOnlyRootFilesystem"] is True, component
            assert sec["capabilities"]["drop"] == ["ALL"], component
        if workload["kind"] != "Job":
            assert "readinessProbe" in spec["containers"][0], component


def test_disruption_budgets_cover_nats_intake_router_and_notifier() -> None:
    replicas = {c: w["spec"].get("replicas", 1) for c, w in workloads().items()}
    covered = {}
    for pdb in of_kind("PodDisruptionBudget").values():
        component = pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        covered[component] = pdb["spec"]
        # A budget must leave room to drain a node, or it blocks every upgrade.
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < replicas[component], component
    assert set(covered) == {"nats", "intake", "router", "notifier"}
    assert replicas["nats"] == 3 and replicas["notifier"] == 2
    assert replicas["ledger"] == 1
    assert workloads()["ledger"]["spec"]["strategy"] == {"type": "Recreate"}


def test_no_secret_value_is_in_the_repository() -> None:
    assert all(d["kind"] != "Secret" for d in rendered()), "Secrets are created by the operator"
    templates = [d for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text()) if d]
    assert templates
    for doc in templates:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert set(doc["stringData"].values()) == {""}, doc["metadata"]["name"]
    referenced = {
        ref["secretKeyRef"]["name"]
        for w in workloads().values()
        for c in pod_spec(w)["containers"]
        for e in c.get("env", [])
        if (ref := e.get("valueFrom", {})) and "secretKeyRef" in ref
    }
    assert referenced <= {d["metadata"]["name"] for d in templates}


def test_services_are_probed_on_their_health_port_which_no_service_exposes() -> None:
    for component in ("intake", "router", "notifier", "ledger"):
        container = pod_spec(workloads()[component])["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == 9464, component
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
        ready = container["readinessProbe"]["httpGet"]
        # Intake's readiness is its app's (it can record reports); the rest ask the health port.
        want = {"path": "/readyz", "port": "http" if component == "intake" else "health"}
        assert ready == want, component
        assert env_of(container)["DOORALERT_METRICS_HOST"]["value"] == "0.0.0.0"
    for service in of_kind("Service").values():
        exposed = {p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
        assert not exposed & {9464, "health"}, service["metadata"]["name"]
    metrics = of_kind("NetworkPolicy")["metrics"]["spec"]
    (rule,) = metrics["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9464}]
    assert [f["namespaceSelector"] for f in rule["from"]] == [
        {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    ]
