"""Session fixtures for the image tests: build the four images once, then run the whole loop on them.

The MLflow server the trainer, predictor and drift monitor talk to is the `mlops-mlflow` image
itself, so its trimmed dependency set is exercised by real registry and artifact traffic. The
ledger's PostgreSQL image (`mlops-postgres`) is built on its own (`postgres_image`): the loop does
not need it, and `pytest tests/images -k postgres` builds only it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import local_stack as stack
from tests.images import podman as pm
from tests.version import app_version

REPO = stack.REPO
VERSION = app_version()
# name -> build context (the chart's default image names; docs/interfaces.md, "Names")
CONTEXTS = {
    "mlops-trainer": REPO / "services" / "trainer",
    "mlops-predictor": REPO / "services" / "predictor",
    "mlops-drift-monitor": REPO / "services" / "drift-monitor",
    "mlops-mlflow": REPO / "k8s" / "mlflow",
}
POSTGRES_IMAGE = "mlops-postgres"
POSTGRES_CONTEXT = REPO / "k8s" / "postgres"
MODEL_NAME = "hotel-adr"
SUMMARY: list[str] = []
"""Lines for the end of the run (pytest_terminal_summary): sizes and build times."""


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    seconds: float
    size: int
    base_size: int

    @property
    def above_base(self) -> int:
        return self.size - self.base_size


def git_revision() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def clean_context(source: Path, dest: Path) -> Path:
    """The files a fresh clone would have (tracked or new, not ignored): no egg-info, caches or venvs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "."],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (source / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)
    return dest


@pytest.fixture(scope="session")
def containers() -> Iterator[pm.Containers]:
    tracked = pm.Containers()
    yield tracked
    tracked.remove_all()


def _base_size() -> int:
    pm.podman_binary()
    base_size = pm.image_size(pm.BASE_IMAGE) if _exists(pm.BASE_IMAGE) else 0
    assert base_size, f"{pm.BASE_IMAGE} is not available: {pm.ENGINE_SETUP_HINT}"
    return base_size


def build_image(name: str, context: Path, base_size: int) -> BuiltImage:
    """`podman build` of one image from a clean copy of its context, tagged as `make images` does."""
    tag = f"{name}:{VERSION}"
    started = time.monotonic()
    pm.podman(
        "build", "--quiet", f"--tag={tag}",
        f"--build-arg=VERSION={VERSION}", f"--build-arg=REVISION={git_revision()}",
        str(context), timeout=1500,
    )  # fmt: skip
    return BuiltImage(name, tag, time.monotonic() - started, pm.image_size(tag), base_size)


def _summarise(image: BuiltImage) -> None:
    SUMMARY.append(
        f"{image.tag}: built in {image.seconds:.0f}s, {image.size / 1e6:.0f} MB, "
        f"{image.above_base / 1e6:.0f} MB above the base"
    )


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    """`podman build` of every image of the loop from a clean copy of its context."""
    base_size = _base_size()
    contexts = {name: clean_context(src, tmp_path_factory.mktemp(name)) for name, src in CONTEXTS.items()}

    # In parallel: the builds mostly wait for the package index; layers are shared through the cache.
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(CONTEXTS)) as pool:
        built = dict(
            zip(CONTEXTS, pool.map(lambda n: build_image(n, contexts[n], base_size), CONTEXTS), strict=True)
        )
    SUMMARY.append(f"built {len(built)} images in {time.monotonic() - started:.0f}s (in parallel)")
    SUMMARY.append(f"stand-in base {pm.BASE_IMAGE}: {base_size / 1e6:.0f} MB (the real one is ~130 MB)")
    for image in built.values():
        _summarise(image)
    return built


@pytest.fixture(scope="session")
def postgres_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The ledger's PostgreSQL image (k8s/postgres), built from a clean copy of its context."""
    context = clean_context(POSTGRES_CONTEXT, tmp_path_factory.mktemp(POSTGRES_IMAGE))
    image = build_image(POSTGRES_IMAGE, context, _base_size())
    _summarise(image)
    return image


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Image sizes and build times at the end of the run, passed or not."""
    if SUMMARY:
        terminalreporter.write_sep("-", "container images")
        for line in SUMMARY:
            terminalreporter.write_line(line)


def _exists(image: str) -> bool:
    return pm.podman("image", "exists", image, check=False).returncode == 0


def start_mlflow_container(
    images: dict[str, BuiltImage], containers: pm.Containers, prefix: str
) -> pm.Server:
    """The mlops-mlflow image serving a SQLite store and proxied artifacts from its tmpfs /tmp."""
    port = stack.free_port()
    return pm.start_server(
        containers,
        images["mlops-mlflow"].tag,
        mlflow_server_args(port),
        prefix=prefix,
        port=port,
        ready_path="/health",
    )


@pytest.fixture(scope="session")
def mlflow_container(images: dict[str, BuiltImage], containers: pm.Containers) -> pm.Server:
    return start_mlflow_container(images, containers, prefix="mlflow")


def mlflow_server_args(port: int) -> list[str]:
    return [
        "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", "sqlite:////tmp/mlflow.db",
        "--serve-artifacts", "--artifacts-destination", "/tmp/artifacts",
        "--workers", "1",
    ]  # fmt: skip


@dataclass(frozen=True)
class Champion:
    tracking_uri: str
    version: str
    run_id: str
    trainer_output: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def image_champion(
    images: dict[str, BuiltImage], mlflow_container: pm.Server, containers: pm.Containers
) -> Champion:
    """`trainer train` in the trainer image, on the real default data: registers hotel-adr@champion."""
    from mlflow import MlflowClient

    result = pm.run_once(
        containers,
        images["mlops-trainer"].tag,
        ["train"],
        prefix="trainer",
        env={"MLFLOW_TRACKING_URI": mlflow_container.url, "LOG_FORMAT": "json"},
        timeout=900,
    )
    assert result.returncode == 0, f"trainer image failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    version = MlflowClient(mlflow_container.url).get_model_version_by_alias(MODEL_NAME, "champion")
    return Champion(mlflow_container.url, version.version, version.run_id, result)


def start_predictor(
    containers: pm.Containers, image: str, tracking_uri: str, *, prefix: str = "predictor"
) -> pm.Server:
    port = stack.free_port()
    return pm.start_server(
        containers,
        image,
        ["--host", "127.0.0.1", "--port", str(port)],
        prefix=prefix,
        port=port,
        ready_path="/readyz",
        env={"MLFLOW_TRACKING_URI": tracking_uri, "LOG_FORMAT": "json"},
    )


@pytest.fixture(scope="session")
def predictor_container(
    images: dict[str, BuiltImage], image_champion: Champion, containers: pm.Containers
) -> pm.Server:
    return start_predictor(containers, images["mlops-predictor"].tag, image_champion.tracking_uri)
