"""Shared helpers for the chart tests: find the tools, render the chart once per values set.

Nothing here needs a cluster. The tools come from `make tools` (helm and kubectl in .tools/bin,
checkov in .tools/checkov) and `make setup` (kubernetes-validate in .venv). A missing tool is a
test failure that says how to get it, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlops"
RULES_FILE = CHART / "rules" / "alerts.yaml"
ALERTMANAGER_FILE = CHART / "files" / "alertmanager.yml"
RELEASE = "mlops"
NAMESPACE = "mlops"


def _set(*assignments: str) -> list[str]:
    return [arg for assignment in assignments for arg in ("--set", assignment)]


# Every values set the tests render: the defaults, each toggle flipped on its own, everything on at
# once, and the environment files under k8s/. Paths are relative to the repository root.
SCENARIOS: dict[str, list[str]] = {
    "default": [],
    "monitoring-off": _set("monitoring.enabled=false"),
    "prometheus-operator": _set("monitoring.prometheusOperator.enabled=true"),
    "network-policies-off": _set("networkPolicy.enabled=false"),
    "api-token": _set("apiToken.enabled=true"),
    "trainer-cronjob": _set("trainer.cronJob.enabled=true", "trainer.job.runOnUpgrade=true"),
    "external-mlflow": _set(
        "mlflow.backendStore.existingSecret=mlflow-backend",
        "mlflow.artifactStore.destination=s3://mlflow-artifacts/mlops",
        "mlflow.replicaCount=2",
    ),
    "all-on": _set(
        "networkPolicy.enabled=true",
        "apiToken.enabled=true",
        "trainer.cronJob.enabled=true",
        "trainer.job.runOnUpgrade=true",
        "predictor.autoscaling.enabled=false",
    ),
    # The predictions ledger: an external database instead of the in-chart one, none at all, and
    # the official postgres image in place of mlops-postgres.
    "ledger-external": _set(
        "ledger.database.external.existingSecret=ledger-db",
        "ledger.database.external.key=uri",
    ),
    "ledger-off": _set("ledger.enabled=false"),
    # The retrain controller: the kill switch, and every other retraining value changed.
    "retraining-off": _set("retraining.enabled=false"),
    "retraining-tuned": [
        *_set(
            "retraining.dryRun=true",
            "retraining.drift.enabled=true",
            "retraining.rollback.checkIntervalSeconds=0",
            "retraining.webhookToken.existingSecret=alertmanager-webhook",
            "retraining.webhookToken.secretKey=bearer",
        ),
        "--set-json",
        'retraining.triggerAlerts=["ModelQualityDegraded", "PredictorHighErrorRate"]',
    ],
    "ledger-official-image": _set(
        "ledger.database.internal.image.repository=postgres",
        "ledger.database.internal.image.tag=15",
    ),
    "laptop": ["-f", "k8s/values-laptop.yaml"],
    "production": ["-f", "k8s/values-production.yaml"],
    "kube-prometheus-stack": ["-f", "k8s/values-kube-prometheus-stack.yaml"],
    # Release-wide placement, and a component that replaces one field of it.
    "scheduling": [
        "--set-json",
        'scheduling={"nodeSelector": {"kubernetes.io/os": "linux"}, "priorityClassName": "mlops",'
        ' "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]}',
        "--set-json",
        'trainer.scheduling={"nodeSelector": {"node.kubernetes.io/instance-type": "big"}}',
        "--set-json",
        'predictor.scheduling={"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable":'
        ' "ScheduleAnyway", "topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels":'
        ' {"app.kubernetes.io/component": "predictor"}}}]}',
        "--set",
        "trainer.cronJob.enabled=true",
    ],
    # Release-wide pod additions, and components that replace or add to them (test_pod_extras.py).
    "pod-extras": [
        "--set-json",
        'podLabels={"team": "ml", "cost-center": "42"}',
        "--set-json",
        'podAnnotations={"example.com/owner": "ml-team"}',
        "--set-json",
        'extraEnv=[{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}]',
        "--set-json",
        'extraEnvFrom=[{"configMapRef": {"name": "proxy-settings"}}]',
        "--set-json",
        'extraVolumes=[{"name": "ca-bundle", "configMap": {"name": "ca-bundle"}}]',
        "--set-json",
        'extraVolumeMounts=[{"name": "ca-bundle", "mountPath": "/etc/ssl/extra", "readOnly": true}]',
        "--set-json",
        'predictor.podLabels={"team": "serving"}',
        "--set-json",
        'predictor.extraEnv=[{"name": "HTTPS_PROXY", "value": "http://predictor-proxy.example:3128"},'
        ' {"name": "SENTRY_DSN", "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}}}]',
        "--set-json",
        'mlflow.extraEnvFrom=[{"secretRef": {"name": "mlflow-s3"}}]',
        "--set-json",
        'trainer.extraVolumes=[{"name": "ca-bundle", "secret": {"secretName": "trainer-ca"}}]',
        "--set-json",
        'monitoring.prometheus.podAnnotations={"example.com/scrape-tier": "internal"}',
        "--set",
        "trainer.cronJob.enabled=true",
        "--set",
        "apiToken.enabled=true",
    ],
}

# Names a scenario's extraEnv adds: the user's own variables, not settings of the services.
EXTRA_ENV_NAMES: dict[str, set[str]] = {"pod-extras": {"HTTPS_PROXY", "SENTRY_DSN"}}

MAKE_TOOLS = (
    "run `make tools` (helm and kubectl into .tools/bin, checkov into .tools/checkov, .venv via setup)"
)


def find_helm() -> str:
    """helm from $HELM (exported by the Makefile), else PATH, else .tools/bin/helm."""
    candidates = [os.environ.get("HELM"), shutil.which("helm"), str(ROOT / ".tools" / "bin" / "helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"helm not found ($HELM, PATH, .tools/bin/helm): {MAKE_TOOLS}", pytrace=False)


def find_checkov() -> str:
    for candidate in (str(ROOT / ".tools" / "checkov" / "bin" / "checkov"), shutil.which("checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"checkov not found (.tools/checkov/bin/checkov, PATH): {MAKE_TOOLS}", pytrace=False)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def helm_template(args: list[str]) -> str:
    result = run([find_helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args])
    if result.returncode != 0:
        pytest.fail(f"helm template {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result.stdout


@dataclass
class Rendered:
    """One `helm template` output: the text and its objects."""

    name: str
    text: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert found, (
            f"{self.name}: no {kind} {name!r}; have {[o['metadata']['name'] for o in self.of_kind(kind)]}"
        )
        return found[0]

    def by_component(self, kind: str, component: str) -> list[dict[str, Any]]:
        return [o for o in self.of_kind(kind) if labels(o).get("app.kubernetes.io/component") == component]

    def workloads(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod template metadata+spec as {"metadata", "spec"}) for everything that runs pods."""
        for obj in self.objects:
            template = pod_template(obj)
            if template is not None:
                yield obj, template


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj["kind"]
    if kind == "Pod":
        return obj
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return None


def containers(template: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*(spec.get("initContainers") or [] if init else []), *spec["containers"]]


def env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env") or []]


def env_value(container: dict[str, Any], name: str) -> dict[str, Any]:
    found = [e for e in container.get("env") or [] if e["name"] == name]
    assert found, f"container {container['name']} has no env {name}; has {env_names(container)}"
    return found[0]


class Renders:
    """Renders each scenario on first use and keeps the result for the session."""

    def __init__(self) -> None:
        self._cache: dict[str, Rendered] = {}

    def __call__(self, name: str) -> Rendered:
        if name not in self._cache:
            text = helm_template(SCENARIOS[name])
            objects = [o for o in yaml.safe_load_all(text) if o]
            self._cache[name] = Rendered(name, text, objects)
        return self._cache[name]


@pytest.fixture(scope="session")
def renders() -> Renders:
    return Renders()


@pytest.fixture(scope="session")
def default(renders: Renders) -> Rendered:
    return renders("default")


@pytest.fixture(scope="session")
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())
