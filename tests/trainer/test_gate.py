"""The champion gate: the rule (`compare`, pure) on every case, and the registry side (`decide`) on a
SQLite MLflow store in a temp folder, in process.

The CLI's view of the gate, against a real MLflow server, is in test_gate_and_cli.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.dummy import DummyRegressor

from tests.trainer.tiny_hotel import tiny_features
from trainer.errors import TrainerError
from trainer.gate import ChampionScore, compare, decide

ALIAS = "champion"


def test_no_champion_promotes() -> None:
    decision = compare(10.0, ALIAS, None)
    assert (decision.promoted, decision.champion_version, decision.champion_rmse) == (True, None, None)
    assert decision.reason == "no model holds alias 'champion' yet"


def test_better_model_promotes() -> None:
    decision = compare(9.5, ALIAS, ChampionScore("3", 10.0))
    assert (decision.promoted, decision.champion_version, decision.champion_rmse) == (True, "3", 10.0)
    assert decision.reason == "test RMSE 9.500 beats champion v3 (10.000)"


@pytest.mark.parametrize("new_rmse", [10.0, 12.0], ids=["equal", "worse"])
def test_equal_or_worse_model_keeps_the_champion(new_rmse: float) -> None:
    decision = compare(new_rmse, ALIAS, ChampionScore("3", 10.0))
    assert (decision.promoted, decision.champion_version, decision.champion_rmse) == (False, "3", 10.0)
    assert decision.reason.startswith(f"test RMSE {new_rmse:.3f} does not beat champion v3")


def test_champion_that_cannot_score_promotes_with_the_reason() -> None:
    decision = compare(50.0, ALIAS, ChampionScore("3", None, "MlflowException"))
    assert (decision.promoted, decision.champion_version, decision.champion_rmse) == (True, "3", None)
    assert decision.reason == "champion v3 cannot score this test data (MlflowException)"


# ---------------------------------------------------------------- the registry side, in process


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    """A SQLite MLflow store; the gate loads the champion through MLflow's global tracking URI."""
    home: Path = tmp_path_factory.mktemp("gate-mlflow")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    mlflow.set_experiment(experiment_id=client.create_experiment("gate", (home / "artifacts").as_uri()))
    yield client
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def test_rows() -> tuple[pd.DataFrame, np.ndarray]:
    features = tiny_features()
    return features.X, features.y.to_numpy()


def register_constant(client: MlflowClient, name: str, value: float, X: pd.DataFrame) -> str:
    """A model that always predicts `value` for rows shaped like X, registered as name@champion."""
    model = DummyRegressor(strategy="constant", constant=value).fit(X, np.full(len(X), value))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)),
                                        serialization_format="cloudpickle")  # fmt: skip
    version = mlflow.register_model(info.model_uri, name).version
    client.set_registered_model_alias(name, ALIAS, version)
    return version


def test_decide_without_a_registered_model_promotes(client: MlflowClient, test_rows) -> None:
    assert decide(client, "gate-new", ALIAS, 1.0, *test_rows).promoted is True


def test_decide_scores_the_champion_on_the_same_rows(client: MlflowClient, test_rows) -> None:
    X, y = test_rows
    version = register_constant(client, "gate-scored", 100.0, X)
    expected_rmse = float(np.sqrt(np.mean((y - 100.0) ** 2)))
    better = decide(client, "gate-scored", ALIAS, expected_rmse - 1, X, y)
    worse = decide(client, "gate-scored", ALIAS, expected_rmse + 1, X, y)
    assert (better.promoted, worse.promoted) == (True, False)
    assert better.champion_version == worse.champion_version == str(version)  # strings, as the REST store
    assert better.champion_rmse == pytest.approx(expected_rmse)


def test_decide_promotes_over_a_champion_with_other_features(client: MlflowClient, test_rows) -> None:
    X, y = test_rows
    version = register_constant(
        client, "gate-other-features", 100.0, pd.DataFrame({"rooms": [1.0, 2.0, 3.0]})
    )
    decision = decide(client, "gate-other-features", ALIAS, 1e6, X, y)
    assert (decision.promoted, decision.champion_version, decision.champion_rmse) == (
        True,
        str(version),
        None,
    )
    assert decision.reason.startswith(f"champion v{version} cannot score this test data (")


def test_decide_fails_when_the_champion_cannot_be_loaded(client: MlflowClient, test_rows) -> None:
    """An MLflow or artifact problem must not promote an unchecked model."""
    empty_run = client.create_run(mlflow.get_experiment_by_name("gate").experiment_id)  # no model in it
    client.create_registered_model("gate-unloadable")
    client.create_model_version(
        "gate-unloadable", source=f"{empty_run.info.artifact_uri}/model", run_id=empty_run.info.run_id
    )
    client.set_registered_model_alias("gate-unloadable", ALIAS, "1")
    with pytest.raises(TrainerError, match="cannot load champion v1 to compare with the new model"):
        decide(client, "gate-unloadable", ALIAS, 1.0, *test_rows)


def test_decide_with_a_model_but_no_alias_yet_promotes(client: MlflowClient, test_rows) -> None:
    client.create_registered_model("gate-no-alias")
    assert decide(client, "gate-no-alias", ALIAS, 1.0, *test_rows).promoted is True


def test_decide_fails_when_the_registry_cannot_answer(test_rows, monkeypatch) -> None:
    """A registry that errors (here: nothing listens) is not "no champion": promoting would skip the gate."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = MlflowClient("http://127.0.0.1:9")  # the discard port: connection refused
    with pytest.raises(TrainerError, match="cannot look up the 'champion' alias of 'gate-down'"):
        decide(unreachable, "gate-down", ALIAS, 1.0, *test_rows)
