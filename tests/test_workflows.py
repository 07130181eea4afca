"""The GitHub workflows run what the README says, on the files that exist.

`make lint` validates the workflow files against GitHub's schema; these tests check what a schema
cannot: the image matrix covers every Dockerfile, the registry only comes from the repository
variable, and the commands match the Makefile and k8s/README.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.test_docs import makefile_targets

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
REGISTRY_VARIABLE = "${{ vars.IMAGE_REGISTRY }}"


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def run_lines(workflow: dict) -> list[str]:
    return [line for step in steps(workflow) for line in step.get("run", "").splitlines()]


def uses(workflow: dict, action: str) -> list[dict]:
    return [s for s in steps(workflow) if s.get("uses", "").split("@")[0] == action]


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_make_targets_in_workflows_exist(name: str) -> None:
    targets = makefile_targets()
    named = set()
    for line in run_lines(load(name)):
        for match in re.finditer(r"(?:^|[\s;&|])make((?:\s+[a-z][\w-]*(?==|\s|$))+)", line):
            named.update(t for t in match.group(1).split() if "=" not in t)
    assert named - targets == set()


def test_ci_runs_make_test_with_the_system_packages() -> None:
    ci = load("ci.yml")
    lines = run_lines(ci)
    assert any(re.fullmatch(r"\s*make test\s*", line) for line in lines)
    assert any(re.fullmatch(r"\s*make setup tools\s*", line) for line in lines)
    installed = " ".join(lines)
    # The same Debian packages as `make system-deps` (the Makefile's SYSTEM_PACKAGES).
    makefile = (REPO / "Makefile").read_text()
    packages = re.search(r"^SYSTEM_PACKAGES := (.+)$", makefile, re.MULTILINE)
    assert packages, "the Makefile has no SYSTEM_PACKAGES line"
    assert {"prometheus", "prometheus-pushgateway", "postgresql"} <= set(packages.group(1).split())
    for package in packages.group(1).split():
        assert re.search(rf"\s{re.escape(package)}(\s|$)", installed), package
    python = uses(ci, "actions/setup-python")
    assert python and python[0]["with"]["python-version"] == "3.11"


def test_images_workflow_builds_every_dockerfile() -> None:
    matrix = load("images.yml")["jobs"]["build"]["strategy"]["matrix"]["include"]
    contexts = {entry["context"] for entry in matrix}
    services = {f"services/{p.parent.name}" for p in (REPO / "services").glob("*/pyproject.toml")}
    assert services <= contexts, "a service image is not built"
    names = {entry["image"] for entry in matrix}
    assert {f"mlops-{s.removeprefix('services/')}" for s in services} <= names
    for context in contexts:
        assert (REPO / context / "Dockerfile").is_file(), f"{context}/Dockerfile does not exist"


@pytest.mark.parametrize("name", ["images.yml", "release.yml"])
def test_registry_comes_only_from_the_repository_variable(name: str) -> None:
    workflow = load(name)
    text = (WORKFLOWS / name).read_text()
    envs = [workflow.get("env", {})] + [job.get("env", {}) for job in workflow["jobs"].values()]
    assert [env["REGISTRY"] for env in envs if "REGISTRY" in env] == [REGISTRY_VARIABLE]
    # No fallback after the variable (`vars.IMAGE_REGISTRY || '<host>'`) and no other registry input.
    assert text.count("vars.IMAGE_REGISTRY") == 1
    for login in uses(workflow, "docker/login-action"):
        assert login["with"]["registry"] == "${{ env.REGISTRY }}"


def test_e2e_runs_the_cluster_tests_as_ci_does() -> None:
    """e2e.yml runs the same `make test-cluster` as .ci/run, on Minikube with Calico (policies enforced)."""
    ci = (REPO / ".ci" / "run").read_text()
    e2e = run_lines(load("e2e.yml"))
    assert re.search(r"^\S.*make test-cluster\b", ci, re.M)
    assert any(re.match(r"\s*make test-cluster\b", line) for line in e2e)
    assert any("MINIKUBE_CNI=calico" in line and "make minikube-up" in line for line in e2e)
    # The images are built inside Minikube (no loader); skaffold builds into its daemon, no push.
    assert not [line for line in e2e if re.search(r"CLUSTER_IMAGE_LOADER=\S", line)]
    assert any("minikube docker-env" in line for line in e2e)
    assert not re.search(r"SKAFFOLD_DEFAULT_REPO\s*[=:]", (WORKFLOWS / "e2e.yml").read_text())


@pytest.mark.parametrize("doc", ["README.md", "k8s/README.md"])
def test_cluster_tests_install_the_chart_as_documented(doc: str) -> None:
    from tests.cluster.test_minikube_path import INSTALL

    documented = re.findall(r"^helm install mlops charts/mlops .*$", (REPO / doc).read_text(), re.M)
    assert " ".join(INSTALL) in documented
    assert "--wait" not in INSTALL, "the trainer hook gates readiness: no --wait (k8s/README.md, Minikube)"
