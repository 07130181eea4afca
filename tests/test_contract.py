"""What the three services exchange, checked with each side's real code, in process (no server).

1. The trainer logs the reference (`log_model_and_reference`) into MLflow; the drift monitor's
   `load_reference` reads it back and `encode` turns it into the detectors' matrix.
2. The predictor serves the trainer's model and lists its predicted rows at /v1/samples; the drift
   monitor's scraper parses that body, and the live rows encode exactly like the same rows offline.
3. The names both sides use for the artifacts and the route are the same.
4. The predictor writes the predictions ledger (its own migrations, predict, :feedback); the drift
   monitor's read-only quality query works on that schema, on SQLite and on the real PostgreSQL.

A tiny synthetic hotel table stands in for the real data; MLflow is a SQLite store in a temp folder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

import drift_monitor.reference as monitor_reference
import trainer.reference as trainer_reference
from drift_monitor.encoding import encode
from drift_monitor.quality import read_ledger
from drift_monitor.reference import Reference, load_reference
from drift_monitor.scrape import SAMPLES_PATH, Sample, _scrape_one
from predictor.app import create_app
from predictor.config import Settings as PredictorSettings
from scripts.local_stack import wait_for
from scripts.traffic import to_records
from tests.trainer.tiny_hotel import tiny_features
from trainer.candidates import CANDIDATES
from trainer.config import Settings as TrainerSettings
from trainer.data import Features, time_split
from trainer.train import Windows, log_model_and_reference

MODEL_NAME = "contract-adr"


@dataclass(frozen=True)
class Logged:
    tracking_uri: str
    client: MlflowClient
    version: str
    features: Features
    windows: Windows
    model: object


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """A ridge pipeline and its reference, logged and registered by the trainer's own functions."""
    home: Path = tmp_path_factory.mktemp("contract-mlflow")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri)
    features = tiny_features()
    split = time_split(features.dates, validation_fraction=0.15, test_fraction=0.15)
    w = Windows.of(features, split)
    model = CANDIDATES["ridge"](features.numeric, features.categorical, 0).fit(w.X_fit, w.y_fit)
    settings = TrainerSettings(mlflow_tracking_uri=uri, reference_rows=100)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id = client.create_experiment("contract", (home / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment_id):
            model_uri = log_model_and_reference(settings, model, features, w.X_fit, w.X_fit, split)
        version = str(mlflow.register_model(model_uri, MODEL_NAME).version)
        client.set_registered_model_alias(MODEL_NAME, "champion", version)
        yield Logged(uri, client, version, features, w, model)
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def reference(logged: Logged) -> Reference:
    return load_reference(logged.client, MODEL_NAME, logged.version)


def test_artifact_and_route_names_match_on_both_sides() -> None:
    for name in ("REFERENCE_FILE", "FEATURE_SPEC_FILE", "PREDICTION_COLUMN"):
        assert getattr(trainer_reference, name) == getattr(monitor_reference, name), name
    assert SAMPLES_PATH in create_app(PredictorSettings()).openapi()["paths"]


def test_drift_monitor_reads_the_reference_the_trainer_logs(logged: Logged, reference: Reference) -> None:
    features = logged.features
    assert reference.spec.features == list(features.X.columns)
    assert reference.spec.numeric == features.numeric
    assert set(reference.spec.categorical) == set(features.categorical)
    assert reference.spec.categorical["country"] == sorted(logged.windows.X_fit["country"].dropna().unique())
    assert len(reference.features) == len(logged.windows.X_fit)
    np.testing.assert_allclose(reference.predictions, logged.model.predict(reference.features))


def test_reference_encodes_with_its_own_spec(reference: Reference) -> None:
    matrix = encode(reference.features, reference.spec)
    assert matrix.shape == (len(reference.features), len(reference.spec.features))
    for i, feature in enumerate(reference.spec.features):
        if feature in reference.spec.categorical:
            known = len(reference.spec.categorical[feature])
            assert set(matrix[:, i]) <= set(range(known + 1)), feature  # known codes, plus "other"
    assert not np.isnan(matrix).any()


@pytest.fixture(scope="module")
def live_samples(logged: Logged) -> tuple[pd.DataFrame, list[Sample]]:
    """Rows predicted by the predictor serving the trainer's model, as the drift monitor scrapes them."""
    rows = logged.windows.X_test.head(8)
    settings = PredictorSettings(mlflow_tracking_uri=logged.tracking_uri, model_name=MODEL_NAME)
    app = create_app(settings)
    with TestClient(app) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60, interval=0.1)
        response = client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": to_records(rows)})
        assert response.status_code == 200, response.text

        async def scrape() -> list[Sample]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport) as http:
                return await _scrape_one(http, "http://predictor", since=0)

        return rows, asyncio.run(scrape())


def test_drift_monitor_parses_the_predictors_samples(logged: Logged, live_samples) -> None:
    rows, samples = live_samples
    assert len(samples) == len(rows)
    assert {(s.model_name, s.model_version) for s in samples} == {(MODEL_NAME, logged.version)}
    predictions = [s.prediction for s in samples]
    np.testing.assert_allclose(predictions, logged.model.predict(rows))


def test_live_rows_encode_like_the_same_rows_offline(reference: Reference, live_samples) -> None:
    rows, samples = live_samples
    live = pd.DataFrame([s.features for s in samples])
    np.testing.assert_array_equal(encode(live, reference.spec), encode(rows, reference.spec))


# ---------------------------------------------------------------- the predictions ledger


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def test_drift_monitor_scores_the_ledger_the_predictor_writes(logged: Logged, ledger_url: str) -> None:
    """4. The predictor migrates the ledger, writes its predictions and takes labels at :feedback; the
    drift monitor's read-only query on that schema gives the errors of exactly those rows."""
    rows, actual = logged.windows.X_test.head(8), np.asarray(logged.windows.y_test[:8], dtype=float)
    started = time.time()
    settings = PredictorSettings(
        mlflow_tracking_uri=logged.tracking_uri, model_name=MODEL_NAME, ledger_database_url=ledger_url
    )
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60, interval=0.1)
        answer = client.post(
            f"/v1/models/{MODEL_NAME}:predict",
            json={"instances": to_records(rows)},
            headers={"X-Request-Id": "contract-ledger"},
        ).json()
        labels = [
            {"id": i, "actual": float(a)} for i, a in zip(answer["prediction_ids"], actual, strict=True)
        ]
        # The predictor writes the ledger off the request path: re-send (idempotent) until every label matches.
        wait_for(
            lambda: (
                client.post(f"/v1/models/{MODEL_NAME}:feedback", json={"labels": labels}).json()["matched"]
                == len(labels)
            ),
            timeout=30,
            what="every label matched to its prediction in the ledger",
        )

    errors, last = read_ledger(ledger_url, MODEL_NAME, started - 1, time.time())

    [version] = errors
    error = np.array(answer["predictions"]) - actual
    assert (version.model_version, version.ledger_rows, version.labelled_rows) == (logged.version, 8, 8)
    assert version.mae == pytest.approx(np.mean(np.abs(error)), rel=1e-9)
    assert version.rmse == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-9)
    assert version.bias == pytest.approx(np.mean(error), rel=1e-9, abs=1e-9)
    assert last is not None and last.source == "label" and started - 1 <= last.at.timestamp() <= time.time()
