"""The `ensemble` candidate: the mean of the other candidates' predictions, chosen by the same
validation rule, refitted member by member, and loadable where the trainer is not installed.

Unit tests on the tiny synthetic table, then `trainer.train.train` in process against an MLflow SQLite
store on two tables: one where averaging two different models beats both, one where it does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import ValidationError
from sklearn.ensemble import VotingRegressor
from sklearn.pipeline import Pipeline

from tests.trainer.tiny_hotel import tiny_features, tiny_hotel_rates
from trainer import ensemble
from trainer.config import Settings, describe_settings_error
from trainer.data import Features, prepare, time_split
from trainer.recalibration import LevelRecalibrated
from trainer.train import Windows, best_candidate, log_model_and_reference, new_candidate, train

MEMBERS = ["ridge", "hist_gradient_boosting"]
CANDIDATES = [*MEMBERS, "ensemble"]


@pytest.fixture(scope="module")
def features() -> Features:
    return tiny_features(200)


def fitted_members(features: Features, names: list[str]) -> dict[str, Pipeline]:
    settings = Settings(candidates=[*names, "ensemble"])
    return {n: new_candidate(n, settings, features).fit(features.X, features.y) for n in names}


def test_the_ensemble_predicts_the_mean_of_its_members(features: Features) -> None:
    members = fitted_members(features, ["ridge", "random_forest", "hist_gradient_boosting"])
    model = ensemble.of_fitted(members)
    unseen = features.X.head(7).assign(country="zzz", market_segment=None)
    for frame in (features.X, unseen):
        mean = np.mean([m.predict(frame) for m in members.values()], axis=0)
        np.testing.assert_allclose(model.predict(frame), mean, rtol=1e-12)
        assert not np.allclose(mean, members["ridge"].predict(frame))  # the members do differ


def test_the_prefitted_ensemble_is_what_fitting_it_would_give(features: Features) -> None:
    """`of_fitted` sets VotingRegressor's fitted attributes by hand: the same ones `fit` sets, and the
    same predictions, so a scikit-learn upgrade that changes them fails here and not in production."""
    members = fitted_members(features, MEMBERS)
    reused = ensemble.of_fitted(members)
    refitted = new_candidate("ensemble", Settings(candidates=CANDIDATES), features).fit(
        features.X, features.y
    )
    assert isinstance(refitted, VotingRegressor)

    def fitted_attributes(model: VotingRegressor) -> set[str]:
        return {k for k in vars(model) if k.endswith("_") and not k.startswith("_")}

    assert fitted_attributes(reused) == fitted_attributes(refitted)
    assert list(reused.named_estimators_) == list(refitted.named_estimators_) == MEMBERS
    assert all(a is not b for a, b in zip(refitted.estimators_, members.values(), strict=True))  # clones
    np.testing.assert_allclose(reused.predict(features.X), refitted.predict(features.X), rtol=1e-12)


@pytest.mark.parametrize(
    "candidates", [["ensemble"], ["ridge", "ensemble"], ["ridge", "ridge", "ensemble"]], ids=str
)
def test_the_ensemble_needs_two_other_candidates(candidates: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(candidates=candidates)
    message = describe_settings_error(caught.value)
    assert message.startswith("TRAINER_CANDIDATES: ")
    assert "TRAINER_CANDIDATES needs at least two besides it" in message


def test_two_other_candidates_are_enough() -> None:
    assert Settings(candidates="ensemble,ridge,random_forest").candidates == [  # type: ignore[arg-type]
        "ensemble",
        "ridge",
        "random_forest",
    ]


@pytest.mark.parametrize(
    ("ensemble_rmse", "winner"),
    [(9.0, "ensemble"), (11.0, "hist_gradient_boosting"), (10.0, "hist_gradient_boosting")],
    ids=["better", "worse", "tie"],
)
def test_the_winner_is_the_lowest_validation_rmse(ensemble_rmse: float, winner: str) -> None:
    validation = {"ridge": {"rmse": 12.0}, "hist_gradient_boosting": {"rmse": 10.0}}
    assert best_candidate(validation | {"ensemble": {"rmse": ensemble_rmse}}) == winner


# ------------------------------------------------------------ training runs, MLflow SQLite store


def diverse_prices(n: int = 800, seed: int = 4) -> pd.DataFrame:
    """The tiny table with noisier prices: a linear model and boosted trees err differently on it, and
    their mean validates about 7% better than either (measured: RMSE 33.0 and 32.6 → 30.3)."""
    raw = tiny_hotel_rates(n, seed)
    noise = np.random.default_rng(seed).normal(0, 25, n)
    return raw.assign(avg_price_per_room=raw["avg_price_per_room"] + noise)


@dataclass(frozen=True)
class Registry:
    uri: str
    client: MlflowClient
    home: Path

    def train(self, name: str, raw: pd.DataFrame) -> dict:
        dataset = self.home / f"{name}.csv"
        raw.to_csv(dataset, index=False)
        settings = self.settings(name, dataset)
        return train(settings).summary()

    def settings(self, name: str, dataset: Path) -> Settings:
        values: dict[str, object] = {
            "MLFLOW_TRACKING_URI": self.uri,
            "dataset": str(dataset),
            "model_name": name,
            "candidates": CANDIDATES,
            "min_rows": 100,
            "reference_rows": 100,
        }
        return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home: Path = tmp_path_factory.mktemp("ensemble")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    client.create_experiment("hotel-adr", (home / "artifacts").as_uri())
    yield Registry(uri, client, home)
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def won(registry: Registry) -> dict:
    return registry.train("ensemble-wins", diverse_prices())


@pytest.fixture(scope="module")
def lost(registry: Registry) -> dict:
    return registry.train("ensemble-loses", tiny_hotel_rates(800, seed=3))


def windows_of(raw: pd.DataFrame) -> tuple[Features, Windows]:
    s = Settings()
    features = prepare(
        raw, target=s.target, date_column=s.date_column, drop_columns=s.drop_columns, min_rows=100
    )
    split = time_split(
        features.dates, validation_fraction=s.validation_fraction, test_fraction=s.test_fraction
    )
    return features, Windows.of(features, split)


def candidate_runs(registry: Registry, outcome: dict) -> dict[str, mlflow.entities.Run]:
    experiment = registry.client.get_experiment_by_name("hotel-adr").experiment_id
    children = registry.client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{outcome['run_id']}'"
    )
    return {run.data.params["candidate"]: run for run in children}


def test_the_ensemble_wins_when_it_validates_best(registry: Registry, won: dict) -> None:
    validation = won["validation"]
    assert validation["ensemble"]["rmse"] < min(validation[m]["rmse"] for m in MEMBERS)
    assert won["winner"] == "ensemble"
    model = mlflow.sklearn.load_model(f"models:/ensemble-wins/{won['version']}")
    assert isinstance(model, VotingRegressor) and list(model.named_estimators_) == MEMBERS
    assert registry.client.get_model_version("ensemble-wins", won["version"]).tags["candidate"] == "ensemble"


def test_a_single_model_wins_when_it_validates_better(registry: Registry, lost: dict) -> None:
    validation = lost["validation"]
    assert validation["hist_gradient_boosting"]["rmse"] < validation["ensemble"]["rmse"]
    assert lost["winner"] == "hist_gradient_boosting"
    model = mlflow.sklearn.load_model(f"models:/ensemble-loses/{lost['version']}")
    assert isinstance(model, Pipeline)


def test_the_ensemble_has_its_own_candidate_run(registry: Registry, won: dict) -> None:
    runs = candidate_runs(registry, won)
    assert sorted(runs) == sorted(CANDIDATES)
    run = runs["ensemble"]
    assert run.data.params["members"] == "ridge,hist_gradient_boosting"
    assert run.data.params["weights"] == "equal"
    assert run.data.metrics["val_rmse"] == pytest.approx(won["validation"]["ensemble"]["rmse"], abs=1e-4)
    member_seconds = sum(runs[m].data.metrics["fit_seconds"] for m in MEMBERS)
    assert run.data.metrics["fit_seconds"] == pytest.approx(member_seconds)


def test_the_winning_ensemble_is_refitted_member_by_member(won: dict) -> None:
    """Each member fitted again on train + validation, as a single winner would be."""
    features, w = windows_of(diverse_prices())
    settings = Settings(candidates=CANDIDATES)
    refitted = [new_candidate(m, settings, features).fit(w.X_fit, w.y_fit) for m in MEMBERS]
    mean = np.mean([m.predict(w.X_test) for m in refitted], axis=0)
    registered = mlflow.sklearn.load_model(f"models:/ensemble-wins/{won['version']}")
    np.testing.assert_allclose(registered.predict(w.X_test), mean, rtol=1e-9)


def test_a_logged_ensemble_loads_and_predicts_without_the_trainer(registry: Registry, won: dict) -> None:
    """The predictor's image has no trainer package: the ensemble is scikit-learn's own, and wrapped
    in the recalibration (a retrain on ledger rows) it travels by value like any recalibrated model."""
    features, w = windows_of(diverse_prices())
    registered = mlflow.sklearn.load_model(f"models:/ensemble-wins/{won['version']}")
    recalibrated = LevelRecalibrated(registered, 1.25)
    split = time_split(features.dates, validation_fraction=0.15, test_fraction=0.15)
    with mlflow.start_run(experiment_id=registry.client.get_experiment_by_name("hotel-adr").experiment_id):
        uri = log_model_and_reference(
            Settings(reference_rows=100), recalibrated, features, w.X_fit, w.X_fit, split
        )
    paths = [
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, tracking_uri=registry.uri, dst_path=str(registry.home / name)
        )
        for name, source in (("plain", f"models:/ensemble-wins/{won['version']}"), ("recalibrated", uri))
    ]
    X = w.X_test.head(20)
    X.to_pickle(rows := registry.home / "rows.pkl")  # exact values and dtypes, unlike JSON
    script = (
        "import sys, json; sys.modules['trainer'] = None\n"  # any import of trainer.* now fails
        "import mlflow, pandas as pd\n"
        f"X = pd.read_pickle({str(rows)!r})\n"
        f"print(json.dumps([mlflow.pyfunc.load_model(p).predict(X).tolist() for p in {paths!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    plain, scaled = (np.array(p) for p in json.loads(result.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(plain, registered.predict(X), rtol=1e-9)
    np.testing.assert_allclose(scaled, 1.25 * registered.predict(X), rtol=1e-9)
