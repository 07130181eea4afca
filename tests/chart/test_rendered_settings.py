"""Rendered numbers are plain integers, and each service accepts the environment the chart gives it.

Helm reads every YAML number in values as float64; printed with `{{ }}` or `toString`, one of 1e6
or more comes out as "8.388608e+06", which Kubernetes int fields and the services' int settings
refuse. Lint, the schema and checkov all pass such a manifest, so these tests look at the values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.chart.conftest import (
    NAMESPACE,
    SCENARIOS,
    Rendered,
    Renders,
    containers,
    helm_template,
)
from tests.chart.test_services_contract import COMMON_ENV, SETTINGS, env_vars_of, settings_classes

# Deliberately large numbers for every integer (or number-typed) value without a schema maximum.
# A values FILE, not --set: --set parses numbers as int64, a user's values file gives float64.
LARGE_VALUES = {
    "tmpSizeLimit": 2147483648,
    "apiToken": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "mlflow": {
        "image": {"tag": 20250101},
        "workers": 1000000,
        "replicaCount": 1000000,  # allowed with an external backend store
        "backendStore": {"uri": "postgresql://mlflow@db:5432/mlflow"},
        "persistence": {"size": 107374182400},
        "resources": {"limits": {"memory": 4294967296}},
    },
    "trainer": {
        "image": {"tag": 20250101},
        "env": {"TRAINER_SEED": 4294967296, "TRAINER_MLFLOW_WAIT_SECONDS": 1000000},
        "job": {
            "backoffLimit": 1000000,
            "activeDeadlineSeconds": 3600000,
            "ttlSecondsAfterFinished": 1209600,
            "mlflowWaitSeconds": 1000000,
        },
        "cronJob": {
            "enabled": True,
            "successfulJobsHistoryLimit": 1000000,
            "failedJobsHistoryLimit": 1000000,
        },
    },
    "predictor": {
        "image": {"tag": 20250101},
        "env": {
            "PREDICTOR_MAX_BODY_BYTES": 16777216,
            "PREDICTOR_MAX_BATCH_SIZE": 1000000,
            "PREDICTOR_SAMPLE_BUFFER_SIZE": 10000000,
            "PREDICTOR_POLL_INTERVAL_SECONDS": 1000000,
        },
        "replicaCount": 1000000,
        "terminationGracePeriodSeconds": 1000000,
        "progressDeadlineSeconds": 1000000,
        "preStopSleepSeconds": 1000000,
        "autoscaling": {"minReplicas": 1000000, "maxReplicas": 10000000},
        "podDisruptionBudget": {"maxUnavailable": 1000000},
    },
    "driftMonitor": {
        "image": {"tag": 20250101},
        "env": {"DRIFT_MONITOR_WINDOW_SECONDS": 2592000, "DRIFT_MONITOR_MIN_SAMPLES": 1000000},
        "startingDeadlineSeconds": 1000000,
        "activeDeadlineSeconds": 1000000,
        "backoffLimit": 1000000,
        "successfulJobsHistoryLimit": 1000000,
        "failedJobsHistoryLimit": 1000000,
        "quality": {
            "labelDelaySeconds": 2592000,
            "windowSeconds": 31536000,
            "minLabelledRows": 1000000,
            "maxMaeRatio": 1.25,
            "labelsMissingAfterSeconds": 2592000,
        },
    },
    "ledger": {
        "retentionDays": 3650,
        "maxRows": 100000000,
        "queueRows": 10000000,
        "database": {"internal": {"image": {"tag": 20250101}, "persistence": {"size": 107374182400}}},
    },
    "retraining": {
        "cooldownSeconds": 2592000,
        "dailyCap": 1000000,
        "drift": {"enabled": True, "minAgeSeconds": 2592000},
        "rollback": {
            "checkIntervalSeconds": 1000000,
            "minLabels": 1000000,
            "margin": 0.05,
            "windowSeconds": 31536000,
            "labelDelaySeconds": 2592000,
        },
        "env": {"RETRAINING_STATUS_INTERVAL_SECONDS": 1000000},
    },
    "monitoring": {"prometheus": {"storageSizeLimit": 10737418240}},
}
# The HPA and a fixed replica count exclude each other: render both ways.
LARGE = {"large-hpa": [], "large-fixed-replicas": ["--set", "predictor.autoscaling.enabled=false"]}

# A number in exponent form as a whole token ("1e+06", "--workers=1e+06"), not inside a word.
EXPONENT = re.compile(r"(?<![\w.])-?\d+(\.\d+)?[eE][+-]?\d+(?![\w.])")
# Kubernetes fields that are genuinely fractional, as dotted paths: none in this chart.
FRACTIONAL_FIELDS: frozenset[str] = frozenset()
# The value of an env entry read from a Secret (valueFrom), which exists only in the cluster: a
# database URL for the ledger's, a token for everything else.
SECRET_STAND_IN = "token"
URL_STAND_IN = "postgresql://ledger:password@mlops-ledger-database:5432/ledger"


@pytest.fixture(scope="module")
def render(renders: Renders, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Rendered]:
    """Any scenario of conftest's SCENARIOS or LARGE, each rendered once."""
    values_file = tmp_path_factory.mktemp("values") / "large.yaml"
    values_file.write_text(yaml.safe_dump(LARGE_VALUES))
    cache: dict[str, Rendered] = {}

    def render(scenario: str) -> Rendered:
        if scenario in SCENARIOS:
            return renders(scenario)
        if scenario not in cache:
            text = helm_template(["-f", str(values_file), *LARGE[scenario]])
            cache[scenario] = Rendered(scenario, text, [o for o in yaml.safe_load_all(text) if o])
        return cache[scenario]

    return render


ALL = [*SCENARIOS, *LARGE]


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item, f"{path}[]")
    else:
        yield path, node


def _env_value(entry: dict[str, Any]) -> str:
    if "value" in entry:
        return entry["value"]
    source = entry["valueFrom"]
    if "secretKeyRef" in source:
        return URL_STAND_IN if entry["name"].endswith("_DATABASE_URL") else SECRET_STAND_IN
    if source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
        return NAMESPACE
    raise AssertionError(f"env {entry['name']}: no stand-in for valueFrom {source}")


def _settings_from(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The container's settings objects, built from exactly its rendered env (nothing else they read)."""
    classes = settings_classes(container["name"])
    for settings in classes:
        prefix = settings.model_config.get("env_prefix", "").upper()
        read = env_vars_of(settings) | COMMON_ENV
        for name in list(os.environ):  # pydantic-settings matches names case-insensitively
            if name.upper() in read or name.upper().startswith(prefix):
                monkeypatch.delenv(name)
    for entry in container.get("env") or []:
        monkeypatch.setenv(entry["name"], _env_value(entry))
    return [settings() for settings in classes]


@pytest.mark.parametrize("scenario", ALL)
def test_services_accept_their_rendered_env(
    render: Callable[[str], Rendered], scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = set()
    for obj, template in render(scenario).workloads():
        for container in containers(template, init=False):
            if container["name"] not in SETTINGS:
                continue
            seen.add(container["name"])
            with monkeypatch.context() as env:
                try:
                    _settings_from(container, env)
                except ValueError as exc:  # pydantic's ValidationError
                    pytest.fail(f"{scenario}: {obj['kind']}/{obj['metadata']['name']}: {exc}", pytrace=False)
    assert seen == set(SETTINGS), f"{scenario}: rendered only {sorted(seen)}"


def _leaves_where(rendered: Rendered, wrong: Callable[[str, Any], bool]) -> list[str]:
    """ "Kind/name path: value" for every leaf of every object that `wrong(path, value)` flags."""
    return [
        f"{obj['kind']}/{obj['metadata']['name']} {path}: {value!r}"
        for obj in rendered.objects
        for path, value in _leaves(obj)
        if wrong(path, value)
    ]


@pytest.mark.parametrize("scenario", ALL)
def test_no_number_in_exponent_form(render: Callable[[str], Rendered], scenario: str) -> None:
    found = _leaves_where(
        render(scenario), lambda _path, value: isinstance(value, str) and bool(EXPONENT.search(value))
    )
    assert not found, f"{scenario}: numbers in exponent form:\n" + "\n".join(found)


@pytest.mark.parametrize("scenario", ALL)
def test_integer_fields_render_as_integers(render: Callable[[str], Rendered], scenario: str) -> None:
    found = _leaves_where(
        render(scenario), lambda path, value: isinstance(value, float) and path not in FRACTIONAL_FIELDS
    )
    assert not found, f"{scenario}: floats where Kubernetes wants integers:\n" + "\n".join(found)


def test_large_values_arrive_as_written(render: Callable[[str], Rendered]) -> None:
    """The large render really carries the numbers (a guard against a no-op values file)."""
    job = render("large-hpa").get("Job", "mlops-trainer")
    assert job["spec"]["ttlSecondsAfterFinished"] == 1209600
    predictor = render("large-fixed-replicas").get("Deployment", "mlops-predictor")
    env = {e["name"]: e.get("value") for e in predictor["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PREDICTOR_MAX_BODY_BYTES"] == "16777216"
    assert env["PREDICTOR_LEDGER_MAX_ROWS"] == "100000000"
    assert predictor["spec"]["replicas"] == 1000000
    controller = render("large-hpa").get("Deployment", "mlops-retrain-controller")
    env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RETRAINING_DAILY_CAP"] == "1000000"
    assert env["TRAINER_ROLLBACK_WINDOW_SECONDS"] == "31536000"
