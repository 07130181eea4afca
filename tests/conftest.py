"""Session-wide real servers for the tests: one MLflow server, one model trained on the real data.

Training runs once per test session (about a minute on 2 cores) and every test that needs a served
model reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import local_stack as stack

# Fixtures that start a real server or train on the real data, and folders whose tests run tools
# outside the venv (helm, checkov): their tests are `integration`, so `make test-unit` (the
# contributor's loop: the venv only, under two minutes) leaves them to `make test`.
SERVER_FIXTURES = {"mlflow_server", "champion", "pushgateway", "registered_reference", "postgres_server"}
TOOL_FOLDERS = ("tests/chart/",)
VENV_ONLY = ("tests/chart/test_schema.py",)  # reads values.schema.json, no helm


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.relative_to(stack.REPO).as_posix()
        needs_tool = path.startswith(TOOL_FOLDERS) and not path.startswith(VENV_ONLY)
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or needs_tool:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def default_pip_requirements() -> Iterator[None]:
    """Models the tests log in process get MLflow's default requirements: inferring them runs a Python
    subprocess that imports the model (15-30 s a model on 2 cores), and no test reads them. The trainer
    and the predictor run as they ship in the server tests."""
    import mlflow.models

    def defaults(_path: str, _flavor: str, fallback: list[str] | None = None, **_options) -> list[str]:
        return fallback or []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mlflow.models, "infer_pip_requirements", defaults)
        yield


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def mlflow_server(state_dir: Path) -> Iterator[stack.Process]:
    proc = stack.start_mlflow(state_dir)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def postgres_server(state_dir: Path) -> Iterator[stack.PostgresServer]:
    """A real PostgreSQL (Debian's `postgresql`, `make system-deps`) with an empty database `ledger`.

    `.url` is its SQLAlchemy URL (`postgresql://mlops:<password>@127.0.0.1:<port>/ledger`); `.stop()` then
    `.start()` is "database down, then back" on the same URL and data. Shared by the session: a test
    that creates tables drops them (or uses names of its own), and one that stops the server starts it.
    """
    server = stack.start_postgres(state_dir / "postgres")
    yield server
    server.remove()


@dataclass(frozen=True)
class TrainedModel:
    tracking_uri: str
    name: str
    version: str
    run_id: str
    outcome: dict
    """The JSON the trainer printed on stdout."""
    logs: str
    """Its JSON log lines (stderr)."""

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@pytest.fixture(scope="session")
def champion(mlflow_server: stack.Process) -> TrainedModel:
    """`trainer train` on the real default data, against the real server: hotel-adr@champion."""
    from mlflow import MlflowClient

    result = stack.run_cli(
        ["trainer", "train"], env={"MLFLOW_TRACKING_URI": mlflow_server.url, "LOG_FORMAT": "json"}
    )
    assert result.returncode == 0, f"trainer failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    version = MlflowClient(mlflow_server.url).get_model_version_by_alias("hotel-adr", "champion")
    return TrainedModel(
        tracking_uri=mlflow_server.url,
        name="hotel-adr",
        version=version.version,
        run_id=version.run_id,
        outcome=json.loads(result.stdout),
        logs=result.stderr,
    )


LOOP_POLL_SECONDS = 2
"""How often the loop's predictors poll the alias (the chart's default is 30 s)."""


@pytest.fixture(scope="session")
def loop_ledger_url(postgres_server: stack.PostgresServer) -> str:
    """The loop's predictions ledger: a database of its own on the session PostgreSQL."""
    return postgres_server.create_database("loop_ledger")


@pytest.fixture(scope="session")
def loop(
    champion: TrainedModel, mlflow_server: stack.Process, state_dir: Path, loop_ledger_url: str
) -> Iterator[stack.Loop]:
    """The whole local loop, started once per session and shared by the drift and e2e tests: two
    predictors serving the champion and writing one ledger (PostgreSQL), Pushgateway, Prometheus with
    the chart's rules, Alertmanager."""
    with stack.local_stack(state_dir / "loop") as s:
        yield stack.start_loop(
            s,
            mlflow_server,
            predictor_settings={
                "PREDICTOR_POLL_INTERVAL_SECONDS": str(LOOP_POLL_SECONDS),
                "PREDICTOR_LEDGER_DATABASE_URL": loop_ledger_url,
            },
        )
