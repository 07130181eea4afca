"""The chart next to kube-prometheus-stack, as k8s/README.md installs it.

The operator (`kube-cluster prometheus-operator` here, the kube-prometheus-stack chart elsewhere)
must be in the cluster; the Prometheus it runs is the one k8s/kube-prometheus-stack/values.yaml
configures (operator-prometheus.yaml). The operator's Prometheus scrapes the predictor through the
PodMonitor, loads our PrometheusRule, and DataDriftDetected fires there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts import local_stack as stack
from tests.cluster import kube, scenario
from tests.cluster.test_minikube_path import drift_check_in, make_load

pytestmark = pytest.mark.timeout(3600)
NAMESPACE = "mlops-kps"
RELEASE = "mlops"
MODEL = "hotel-adr"
MONITORING = kube.Namespace("monitoring")
INSTALL = ["helm", "install", RELEASE, "charts/mlops", "-n", NAMESPACE, "--create-namespace",
           "-f", "k8s/values-laptop.yaml", "-f", "k8s/values-kube-prometheus-stack.yaml", "--timeout", "15m"]  # fmt: skip


PROMETHEUS = "kube-prometheus-stack-prometheus"  # the name kube-prometheus-stack gives its Prometheus
PROMETHEUS_MANIFEST = Path(__file__).with_name("operator-prometheus.yaml")


@pytest.fixture(scope="module")
def operator_prometheus(cluster: str) -> Iterator[str]:
    """The operator's Prometheus, reached through a port-forward; fails when no operator runs.

    Where kube-prometheus-stack is installed (the Minikube workflow) its own Prometheus is used and
    left alone; elsewhere the test creates the same Prometheus and removes it afterwards."""
    crd = kube.run(["kubectl", "get", "crd", "prometheuses.monitoring.coreos.com"], check=False)
    assert crd.returncode == 0, (
        "no Prometheus Operator in the cluster: run `kube-cluster prometheus-operator`"
    )
    created = not MONITORING.kubectl("get", "prometheus", PROMETHEUS, "--ignore-not-found").strip()
    if created:
        MONITORING.kubectl("apply", "-f", str(PROMETHEUS_MANIFEST))
    try:
        kube.wait_for(lambda: MONITORING.kubectl("get", "statefulset", f"prometheus-{PROMETHEUS}", "--ignore-not-found"),
                      120, what="the operator's Prometheus StatefulSet")  # fmt: skip
        MONITORING.kubectl(
            "rollout", "status", f"statefulset/prometheus-{PROMETHEUS}", "--timeout=5m", timeout=330
        )
        with kube.port_forward("monitoring", f"pod/prometheus-{PROMETHEUS}-0", 9090) as forward:
            yield forward.url
    finally:
        if created:
            MONITORING.kubectl("delete", "-f", str(PROMETHEUS_MANIFEST), "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def release(operator_prometheus: str, images: tuple[str, ...], stage) -> Iterator[kube.Namespace]:
    ns = kube.Namespace(NAMESPACE)
    kube.run(["kubectl", "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", "--timeout=5m"])
    kube.run(["kubectl", "create", "namespace", NAMESPACE])
    kube.run(["kubectl", "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"])
    with stage("kube-prometheus-stack mode: helm install"):
        kube.run(INSTALL, timeout=1200)
        ns.kubectl("rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330)
    try:
        yield ns
    finally:
        (kube.LOG_DIR / "diagnostics-kube-prometheus-stack.txt").write_text(ns.diagnostics())
        kube.run(["helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait"], check=False, timeout=330)
        kube.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], check=False)


def test_operator_objects_replace_our_prometheus(release: kube.Namespace) -> None:
    kinds = {line.split("/")[0] for line in release.kubectl("get", "podmonitors,servicemonitors,prometheusrules",
                                                            "-o", "name").split()}  # fmt: skip
    assert kinds == {"podmonitor.monitoring.coreos.com", "servicemonitor.monitoring.coreos.com",
                     "prometheusrule.monitoring.coreos.com"}, kinds  # fmt: skip
    assert not release.kubectl("get", "deployment", f"{RELEASE}-prometheus", "--ignore-not-found").strip()


def test_operator_prometheus_scrapes_predictor_and_loads_rules(release: kube.Namespace, operator_prometheus: str,
                                                               stage) -> None:  # fmt: skip
    with stage("kube-prometheus-stack mode: PodMonitor scraped, PrometheusRule loaded"):
        kube.wait_for(
            lambda: scenario.promql(operator_prometheus, f'predictor_model_info{{namespace="{NAMESPACE}"}}'), 180,
            interval=5, what="the predictor scraped through the PodMonitor",
        )  # fmt: skip
        rules = kube.wait_for(
            lambda: _rule_names(operator_prometheus), 180, interval=5, what="our rules loaded"
        )
    assert {"DataDriftDetected", "PredictorDown", "DriftMonitorStale"} <= rules, rules


def _rule_names(prometheus: str) -> set[str]:
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return {r["name"] for g in groups for r in g["rules"] if r.get("type") == "alerting"}


def test_data_drift_fires_in_the_operator_prometheus(release: kube.Namespace, operator_prometheus: str,
                                                     stage) -> None:  # fmt: skip
    with kube.port_forward(NAMESPACE, f"service/{RELEASE}-predictor", 8080) as forward:
        make_load(forward.url, "drift", "45s")
    report = drift_check_in(release, RELEASE)
    assert any(v["drift_detected"] for v in report["versions"]), json.dumps(report)[:2000]
    with stage("kube-prometheus-stack mode: DataDriftDetected firing"):
        firing = kube.wait_for(
            lambda: [a for a in stack.prometheus_alerts(operator_prometheus, "DataDriftDetected")
                     if a["state"] == "firing" and a["labels"].get("namespace", NAMESPACE) == NAMESPACE],
            300, interval=5, what="DataDriftDetected firing in the operator's Prometheus",
        )  # fmt: skip
    assert firing[0]["labels"]["model_name"] == MODEL
