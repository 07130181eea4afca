"""The chart lints strictly and every manifest it renders is valid Kubernetes, for every values set."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import CHART, MAKE_TOOLS, SCENARIOS, Renders, find_helm, run

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema available.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# Prometheus Operator custom resources have no schema in kubernetes-validate (it ships only the
# built-in API). Their shape is checked in test_manifests.py against the operator's documented
# fields instead; everything else must validate.
CRD_GROUPS = ("monitoring.coreos.com/",)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_helm_lint_strict(scenario: str) -> None:
    result = run([find_helm(), "lint", "--strict", str(CHART), *SCENARIOS[scenario]])
    assert result.returncode == 0, result.stdout + result.stderr


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(f"kubernetes-validate is not installed: {MAKE_TOOLS}", pytrace=False)
    return kubernetes_validate


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_manifest_validates_strictly(renders: Renders, scenario: str) -> None:
    kv = _kubernetes_validate()
    rendered = renders(scenario)
    assert rendered.objects, "nothing rendered"
    errors = []
    for obj in rendered.objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        for version in K8S_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} @ {version}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_operator_mode_renders_only_known_custom_resources(renders: Renders) -> None:
    kinds = {
        o["kind"] for o in renders("prometheus-operator").objects if o["apiVersion"].startswith(CRD_GROUPS)
    }
    assert kinds == {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    assert all(
        o["apiVersion"] == "monitoring.coreos.com/v1"
        for o in renders("prometheus-operator").objects
        if o["kind"] in kinds
    )
