"""One version: every place that must state it agrees with the chart's appVersion.

The version lives in charts/mlops/Chart.yaml; the chart's image tags, the Makefile, skaffold and
the workflows read it from there. What cannot read a YAML file (pyproject.toml, a Dockerfile's
`ARG VERSION` default) keeps a copy, and this test fails when a copy and the chart disagree.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

import predictor
from tests.version import CHART_FILE, app_version

REPO = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.parent for p in (REPO / "services").glob("*/pyproject.toml"))
# The services' images and the servers' images the chart runs (k8s/mlflow, k8s/postgres).
DOCKERFILES = sorted([*(s / "Dockerfile" for s in SERVICES), *REPO.glob("k8s/*/Dockerfile")])
# Values blocks holding an image the project builds (dotted paths into values.yaml).
BUILT_IMAGES = ("mlflow", "trainer", "predictor", "driftMonitor", "ledger.database.internal")


def test_chart_version_equals_app_version() -> None:
    chart = yaml.safe_load(CHART_FILE.read_text())
    assert str(chart["version"]) == app_version()


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_every_package_has_the_chart_version(service: Path) -> None:
    project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    assert project["version"] == app_version(), (
        f"{service.name}/pyproject.toml: set version to {app_version()}"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_every_dockerfile_labels_the_chart_version_by_default(dockerfile: Path) -> None:
    defaults = re.findall(r"^ARG VERSION=(\S+)$", dockerfile.read_text(), re.M)
    assert defaults == [app_version()]


def test_predictor_reports_its_package_version() -> None:
    assert predictor.__version__ == app_version(), "installed package is stale: run `make setup`"


def test_built_images_default_to_the_chart_version() -> None:
    values = yaml.safe_load((REPO / "charts" / "mlops" / "values.yaml").read_text())
    tags = {}
    for path in BUILT_IMAGES:
        block = values
        for key in path.split("."):
            block = block[key]
        tags[path] = block["image"]["tag"]
    assert tags == dict.fromkeys(BUILT_IMAGES, "")


def _run(cmd: list[str], stdin: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "IMAGE_TAG"}  # the default, not an override
    return subprocess.run(
        cmd, input=stdin, cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout


def test_makefile_tags_images_with_the_chart_version() -> None:
    makefile = "print-image-tag:\n\t@echo $(IMAGE_TAG)\n"
    assert (
        _run(["make", "-s", "-f", "Makefile", "-f", "-", "print-image-tag"], makefile).strip()
        == app_version()
    )


def test_minikube_script_tags_images_with_the_chart_version() -> None:
    script = (REPO / "k8s" / "minikube-up.sh").read_text()
    assignment = next(line for line in script.splitlines() if line.startswith("IMAGE_TAG="))
    assert _run(["bash", "-c", f'{assignment}; echo "$IMAGE_TAG"'], "").strip() == app_version()
