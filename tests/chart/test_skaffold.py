"""skaffold.yaml, checked structurally: artifacts, chart, value keys, port-forwards, profiles."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.chart.conftest import ROOT, Rendered

SERVICES = ("trainer", "predictor", "drift-monitor")
# image -> (build context, values key): the three services, the MLflow server and the ledger's
# PostgreSQL.
ARTIFACTS = {
    **{f"mlops-{s}": (f"services/{s}", {"drift-monitor": "driftMonitor"}.get(s, s)) for s in SERVICES},
    "mlops-mlflow": ("k8s/mlflow", "mlflow"),
    "mlops-postgres": ("k8s/postgres", "ledger.database.internal"),
}


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


def _lookup(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_schema_version(skaffold: dict[str, Any]) -> None:
    assert skaffold["apiVersion"] == "skaffold/v4beta14"
    assert skaffold["kind"] == "Config"


def test_one_artifact_per_service_built_from_its_dockerfile(skaffold: dict[str, Any]) -> None:
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    assert set(artifacts) == set(ARTIFACTS)
    for image, (context, _key) in ARTIFACTS.items():
        artifact = artifacts[image]
        assert artifact["context"] == context
        dockerfile = ROOT / artifact["context"] / artifact.get("docker", {}).get("dockerfile", "Dockerfile")
        assert dockerfile == ROOT / context / "Dockerfile"
        assert dockerfile.is_file(), f"{dockerfile.relative_to(ROOT)} does not exist"
    # Skaffold decides whether to push (not for Minikube's own daemon, yes for any other cluster);
    # BuildKit needs the buildx plugin, which podman's Docker API lacks.
    for local in (
        skaffold["build"]["local"],
        *(p.get("build", {}).get("local", {}) for p in skaffold["profiles"]),
    ):
        assert "push" not in local and not local.get("useBuildkit", False), local
    helm_flags = skaffold["deploy"]["helm"]["flags"]
    assert helm_flags["install"] == helm_flags["upgrade"] == ["--timeout", "15m"]


def test_helm_release_wires_every_built_image(skaffold: dict[str, Any], values: dict[str, Any]) -> None:
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for values_file in release.get("valuesFiles", []):
        assert (ROOT / values_file).is_file()
    templates = release["setValueTemplates"]
    for key in templates:
        assert _lookup(values, key), f"setValueTemplates key {key} is not in values.yaml"
    for image, (_context, key) in ARTIFACTS.items():
        var = image.replace("-", "_")
        assert templates[f"{key}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{key}.image.tag"] == f"{{{{.IMAGE_TAG_{var}}}}}"


def test_profile_value_keys_exist(skaffold: dict[str, Any], values: dict[str, Any]) -> None:
    profiles = {p["name"]: p for p in skaffold["profiles"]}
    assert {"dev", "ci"} <= set(profiles)
    for profile in profiles.values():
        for patch in profile.get("patches", []):
            if patch["path"].endswith("/setValues"):
                for key in patch["value"]:
                    assert _lookup(values, key), f"profile {profile['name']}: {key} is not in values.yaml"


def test_port_forwards_name_rendered_services(skaffold: dict[str, Any], default: Rendered) -> None:
    (release,) = skaffold["deploy"]["helm"]["releases"]
    services = {s["metadata"]["name"]: s for s in default.of_kind("Service")}
    forwarded = set()
    for forward in skaffold["portForward"]:
        assert forward["resourceType"] == "service"
        assert forward["namespace"] == release["namespace"] == default.objects[0]["metadata"]["namespace"]
        # The tests render with the release name skaffold uses.
        assert forward["resourceName"].startswith(f"{release['name']}-")
        service = services[forward["resourceName"]]
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]
        forwarded.add(re.sub(rf"^{release['name']}-", "", forward["resourceName"]))
    assert forwarded == {"predictor", "mlflow", "prometheus"}
