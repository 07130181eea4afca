"""The project's skaffold.yaml on a real cluster: `skaffold run`, then `skaffold dev` for one rebuild.

Skaffold runs in a throwaway copy of the working tree (its own git commit, so the default gitCommit
tagger works), because the dev loop is driven by editing a file of the predictor's build context. Where the images go is the
user's setting: SKAFFOLD_DEFAULT_REPO (localhost:5000 for kube-cluster; unset with Minikube's
docker-env, where nothing is pushed).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import kube
from tests.images.conftest import clean_context
from tests.version import app_version

pytestmark = pytest.mark.timeout(3600)
NAMESPACE = "mlops"  # skaffold.yaml's release namespace
RELEASE = "mlops"
MODEL = "hotel-adr"
DEV_VERSION = f"{app_version()}+skaffold.dev"  # PEP 440 normal form, as metadata reports it


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, cluster: str) -> Iterator[Path]:
    # A release left behind by an earlier failed test in the same namespace would be upgraded instead.
    kube.run(["helm", "uninstall", RELEASE, "-n", NAMESPACE, "--ignore-not-found", "--wait"], timeout=330)
    delete_kept_data(check=True)
    copy = clean_context(kube.REPO, tmp_path_factory.mktemp("skaffold") / "repo")
    for argv in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "skaffold test"]):  # fmt: skip
        kube.run(argv, cwd=copy)
    yield copy
    kube.run(["skaffold", "delete"], cwd=copy, check=False, timeout=300)
    delete_kept_data(check=False)
    shutil.rmtree(copy, ignore_errors=True)


def delete_kept_data(*, check: bool) -> None:
    """What `helm uninstall` keeps on purpose: the MLflow and ledger PVCs, the ledger's password Secret."""
    kube.run(["kubectl", "-n", NAMESPACE, "delete", "pvc", f"{RELEASE}-mlflow", f"{RELEASE}-ledger-database",
              "--ignore-not-found"], timeout=120, check=check)  # fmt: skip
    kube.run(["kubectl", "-n", NAMESPACE, "delete", "secret", f"{RELEASE}-ledger-database", "--ignore-not-found"],
             timeout=60, check=check)  # fmt: skip


def served(namespace: str) -> dict:
    with kube.port_forward(namespace, f"service/{RELEASE}-predictor", 8080) as forward:
        metadata = httpx.get(f"{forward.url}/v1/models/{MODEL}", timeout=10).json()
        openapi = httpx.get(f"{forward.url}/openapi.json", timeout=10).json()
    return {
        "ready": metadata.get("ready"),
        "version": metadata.get("version"),
        "app": openapi["info"]["version"],
    }


def predictor_images(ns: kube.Namespace) -> set[str]:
    deployment = ns.get("deployment", f"{RELEASE}-predictor")
    return {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_skaffold_run_builds_pushes_and_deploys(workdir: Path, stage) -> None:
    ns = kube.Namespace(NAMESPACE)
    with stage("skaffold run (build five images, push, helm install with the trainer hook)"):
        out = kube.run(["skaffold", "run", "--status-check=true"], cwd=workdir, timeout=1800)
    kube.LOG_DIR.mkdir(parents=True, exist_ok=True)
    (kube.LOG_DIR / "skaffold-run.log").write_text(out.stdout + out.stderr)
    repo = os.environ.get("SKAFFOLD_DEFAULT_REPO")
    for image in predictor_images(ns):
        assert image.startswith(f"{repo}/mlops-predictor:" if repo else "mlops-predictor:"), image
    ns.kubectl("rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330)
    assert served(NAMESPACE)["ready"] is True


def test_skaffold_dev_rebuilds_on_a_source_change(workdir: Path, stage) -> None:
    """`skaffold dev`: an edit of the predictor's source reaches the running predictor."""
    ns = kube.Namespace(NAMESPACE)
    log_path = kube.LOG_DIR / "skaffold-dev.log"
    kube.LOG_DIR.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        dev = subprocess.Popen([kube.binary("skaffold"), "dev", "--port-forward=off", "--cleanup=false"],
                               cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
        try:
            with stage("skaffold dev: first deploy (dev profile)"):
                kube.wait_for(lambda: _dev_alive(dev) and "Watching for changes" in log_path.read_text(), 900,
                              interval=3, what="skaffold dev watching")  # fmt: skip
            before = predictor_images(ns)
            # The package version is predictor.__version__ (importlib.metadata), served in /openapi.json.
            source = workdir / "services" / "predictor" / "pyproject.toml"
            released = f'version = "{app_version()}"'
            assert released in source.read_text()
            source.write_text(source.read_text().replace(released, f'version = "{DEV_VERSION}"'))
            with stage("skaffold dev: edit -> rebuild -> predictor serves the change"):
                kube.wait_for(lambda: _dev_alive(dev) and predictor_images(ns) != before, 900, interval=3,
                              what="a new predictor image deployed")  # fmt: skip
                ns.kubectl(
                    "rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330
                )
                kube.wait_for(lambda: served(NAMESPACE)["app"] == DEV_VERSION and served(NAMESPACE)["ready"], 180,
                              interval=3, what="the rebuilt predictor serving")  # fmt: skip
        finally:
            os.killpg(dev.pid, signal.SIGINT)
            try:
                dev.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)


def _dev_alive(dev: subprocess.Popen) -> bool:
    if dev.poll() is not None:
        raise kube.CommandFailed(
            f"skaffold dev exited {dev.returncode}: see {kube.LOG_DIR / 'skaffold-dev.log'}"
        )
    return True
