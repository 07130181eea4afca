"""Predictor test fixtures.

Unit tests serve a tiny scikit-learn pipeline logged to a SQLite MLflow store under a temp folder (fast,
no server); integration tests (test_integration.py) serve the session `champion` over real HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from predictor.app import create_app
from predictor.config import Settings
from scripts.local_stack import wait_for

TINY_MODEL = "tiny-adr"


def tiny_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Three columns, one of each signature type; `city` has missing values (an optional column)."""
    rng = np.random.default_rng(seed)
    city = rng.choice(np.array(["lisbon", "porto", "faro"], dtype=object), n)
    city[::17] = None
    return pd.DataFrame(
        {
            "nights": rng.integers(1, 10, n).astype("int64"),
            "base_price": rng.uniform(40, 200, n),
            "city": city,
        }
    )


def fit_tiny_pipeline(seed: int = 0, city_column: str = "city") -> tuple[Pipeline, pd.DataFrame]:
    X = tiny_frame(seed=seed)
    y = X["base_price"] * (1 + 0.05 * X["nights"]) + (X["city"] == "lisbon") * 20
    X = X.rename(columns={"city": city_column})
    encode = ColumnTransformer(
        [
            (
                "city",
                make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder()),
                [city_column],
            ),
            ("numeric", "passthrough", ["nights", "base_price"]),
        ]
    )
    return Pipeline([("preprocess", encode), ("model", LinearRegression())]).fit(X, y), X


class BrokenOnLoad(mlflow.pyfunc.PythonModel):
    """A registered version that cannot be served: it fails while loading."""

    def load_context(self, context):
        raise RuntimeError("this version is broken on purpose")

    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


@dataclass
class TinyRegistry:
    tracking_uri: str
    name: str
    client: MlflowClient
    experiment_id: str

    def with_new_model(self) -> TinyRegistry:
        """The same store, another registered model (version 1 = the tiny pipeline, as `champion`)."""
        other = replace(self, name=f"tiny-{uuid.uuid4().hex[:8]}")
        pipeline, X = fit_tiny_pipeline()
        other.log_version(pipeline, X, alias="champion")
        return other

    def log_version(
        self, model: Pipeline | mlflow.pyfunc.PythonModel, example: pd.DataFrame, *, alias: str | None
    ) -> str:
        """Log and register one version (and move `alias` to it); returns the version number."""
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            with mlflow.start_run(experiment_id=self.experiment_id):
                signature = infer_signature(example, np.zeros(len(example)))
                if isinstance(model, mlflow.pyfunc.PythonModel):
                    info = mlflow.pyfunc.log_model(
                        name="model", python_model=model, signature=signature, registered_model_name=self.name
                    )
                else:
                    info = mlflow.sklearn.log_model(
                        model,
                        name="model",
                        serialization_format="cloudpickle",
                        signature=signature,
                        input_example=example.head(3),
                        registered_model_name=self.name,
                    )
        finally:
            mlflow.set_tracking_uri(previous)
        version = str(info.registered_model_version)
        if alias:
            self.client.set_registered_model_alias(self.name, alias, version)
        return version


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> TinyRegistry:
    """A SQLite MLflow store with `tiny-adr` version 1 as `champion`."""
    home: Path = tmp_path_factory.mktemp("tiny-mlflow")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("tiny", artifact_location=(home / "artifacts").as_uri())
    registry = TinyRegistry(uri, TINY_MODEL, client, experiment_id)
    pipeline, X = fit_tiny_pipeline()
    registry.log_version(pipeline, X, alias="champion")
    return registry


def tiny_settings(registry: TinyRegistry, **overrides: object) -> Settings:
    return Settings(
        mlflow_tracking_uri=registry.tracking_uri,
        model_name=registry.name,
        poll_interval_seconds=0.5,
        load_retry_max_seconds=1,
        **overrides,
    )


@pytest.fixture
def make_client(tiny_registry: TinyRegistry) -> Iterator[Callable[..., TestClient]]:
    """Build the app with settings overrides, start it, and (by default) wait until a model is served."""
    clients: list[TestClient] = []

    def make(*, ready: bool = True, settings: Settings | None = None, **overrides: object) -> TestClient:
        client = TestClient(create_app(settings or tiny_settings(tiny_registry, **overrides)))
        client.__enter__()
        clients.append(client)
        if ready:
            wait_for(lambda: client.get("/readyz").status_code == 200, interval=0.05)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (None for missing)."""
    return [
        {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]
