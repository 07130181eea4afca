"""Fixtures for the cluster tests: a reachable cluster, our five images in it, stage timings.

Any kubeconfig works: `make test-cluster` (after `kube-cluster up`) here, Minikube in
.github/workflows/e2e.yml. How the images get into the cluster is the one thing that differs:
CLUSTER_IMAGE_LOADER is the command that copies podman-built images in (`kube-cluster load`,
`minikube image load`); empty means they are there already (`make minikube-up` built them inside).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterator

import pytest

from tests.cluster import kube
from tests.version import app_version

IMAGES = ("mlops-trainer", "mlops-predictor", "mlops-drift-monitor", "mlops-mlflow", "mlops-postgres")
TIMINGS: list[tuple[str, float]] = []
"""(stage, seconds) for the end of the run and .state/cluster/timings.txt."""
REPORT: list[str] = []
"""Further figures for the end of the run (resource peaks)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def stage() -> Iterator:
    """`with stage("helm install"):` records how long a step took."""

    class Stage:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self) -> None:
            self.start = time.monotonic()

        def __exit__(self, *exc: object) -> None:
            TIMINGS.append((self.name, time.monotonic() - self.start))

    yield Stage
    kube.LOG_DIR.mkdir(parents=True, exist_ok=True)
    (kube.LOG_DIR / "timings.txt").write_text("".join(f"{s:7.1f}s  {n}\n" for n, s in TIMINGS))


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("cluster stage timings")
        for name, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f}s  {name}")
    for text in REPORT:
        terminalreporter.write_line(text)


@pytest.fixture(scope="session")
def cluster() -> str:
    """The server KUBECONFIG points at; a missing cluster is an error, never a skip."""
    kube.run(["kubectl", "get", "--raw", "/readyz"], timeout=30)
    return kube.run(
        ["kubectl", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]
    ).stdout


@pytest.fixture(scope="session")
def images(cluster: str, stage) -> tuple[str, ...]:
    """`make images` (podman/docker, cached layers) and the loader, unless they are in the cluster."""
    loader = shlex.split(os.environ.get("CLUSTER_IMAGE_LOADER", ""))
    if loader:
        with stage("build the five images (make images)"):
            kube.run(["make", "--no-print-directory", "images"], timeout=1800)
        with stage("load the five images into the cluster"):
            kube.run([*loader, *(f"{name}:{app_version()}" for name in IMAGES)], timeout=900)
    return IMAGES
