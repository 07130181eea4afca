"""Fixtures of the drift monitor tests: a reference built from the real hotel data, registered in the
real MLflow server the way the trainer registers one, and tiny real HTTP servers that answer like
predictor pods (docs/interfaces.md, `GET /v1/samples`) or like the Kubernetes API listing EndpointSlices.

The quality tests write a ledger with the predictor's own migrations and store (SQLite and the real
PostgreSQL) and register model versions with and without a `reference_mae` in the real MLflow server.

The unit tests do not need the trained champion: the reference is a sample of the rows the champion
is fitted on, and each row's "prediction" is its real price (an oracle stand-in for the model, so
seasonal prices give real prediction drift). The integration test uses the real trainer and predictor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from drift_monitor.reference import FeatureSpec, Reference
from scripts import local_stack as stack
from scripts.traffic import hotel_windows, to_records
from tests.fakehttp import JsonAnswer, serve_json, server_url

REFERENCE_ROWS = 5000
MODEL_NAME = "hotel-adr-drift-tests"  # not the trainer's name, so the champion fixture is untouched


def feature_spec(frame: pd.DataFrame) -> FeatureSpec:
    """The trainer's feature_spec.json for these columns (numbers vs. sorted categories)."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = {
        c: sorted(str(v) for v in frame[c].dropna().unique()) for c in frame.columns if c not in numeric
    }
    return FeatureSpec(features=list(frame.columns), numeric=numeric, categorical=categorical)


@pytest.fixture(scope="session")
def hotel_reference() -> Reference:
    """5,000 rows of the window the champion is fitted on, with their price as the 'prediction'."""
    w = hotel_windows()
    features = w.normal.drop(columns=[w.target])
    sample = w.normal.sample(n=REFERENCE_ROWS, random_state=42).reset_index(drop=True)
    spec = feature_spec(features)
    return Reference(
        model_name=MODEL_NAME,
        model_version="1",
        run_id="in-memory",
        features=sample[spec.features],
        predictions=sample[w.target],
        spec=spec,
    )


def window_rows(mode: str, n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """n rows of a traffic window (normal = training period, drift = summer 2017): features and price."""
    w = hotel_windows()
    rows = w.frame(mode).sample(n=n, replace=n > len(w.frame(mode)), random_state=seed).reset_index(drop=True)
    return rows.drop(columns=[w.target]), rows[w.target]


def contract_samples(mode: str, n: int, seed: int, *, version: str, timestamp: float) -> list[dict]:
    """Samples exactly as a predictor's /v1/samples lists them."""
    features, prices = window_rows(mode, n, seed)
    return [
        {
            "timestamp": timestamp + i * 1e-3,
            "request_id": f"req-{seed}-{i}",
            "model_name": MODEL_NAME,
            "model_version": version,
            "features": row,
            "prediction": float(price),
        }
        for i, (row, price) in enumerate(zip(to_records(features), prices, strict=True))
    ]


@dataclass(frozen=True)
class RegisteredReference:
    tracking_uri: str
    model_name: str
    version: str
    """A version whose run holds reference/reference.parquet and reference/feature_spec.json."""
    version_without_reference: str
    """A version whose run holds no reference artifacts (an older trainer's)."""
    next_version: str
    """Another version of the run with the reference, as during a rollout to a retrained model."""


@pytest.fixture(scope="session")
def registered_reference(
    mlflow_server: stack.Process, hotel_reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> RegisteredReference:
    """The reference logged and registered in the real MLflow server as the trainer does it."""
    client = MlflowClient(mlflow_server.url)
    experiment_id = client.create_experiment("drift-monitor-tests")
    folder = tmp_path_factory.mktemp("reference")
    frame = hotel_reference.features.assign(prediction=hotel_reference.predictions)
    frame.to_parquet(folder / "reference.parquet", index=False)
    spec = hotel_reference.spec
    (folder / "feature_spec.json").write_text(
        json.dumps(
            {
                "target": "avg_price_per_room",
                "features": spec.features,
                "numeric": spec.numeric,
                "categorical": spec.categorical,
            }
        )
    )
    client.create_registered_model(MODEL_NAME)

    with_reference = client.create_run(experiment_id, run_name="with-reference")
    client.log_artifacts(with_reference.info.run_id, str(folder), "reference")
    client.set_terminated(with_reference.info.run_id)
    without_reference = client.create_run(experiment_id, run_name="without-reference")
    client.set_terminated(without_reference.info.run_id)

    versions = [
        client.create_model_version(
            MODEL_NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        ).version
        for run in (with_reference, without_reference, with_reference)
    ]
    return RegisteredReference(mlflow_server.url, MODEL_NAME, *versions)


@dataclass
class FakePredictor:
    """A real HTTP server on 127.0.0.1 that answers /v1/samples like a predictor pod."""

    samples: list[dict] = field(default_factory=list)
    status: int = 200
    token: str | None = None
    requests: list[dict] = field(default_factory=list)
    url: str = ""

    def answer(self, query: dict[str, list[str]], authorization: str | None) -> tuple[int, dict]:
        self.requests.append({"query": query, "authorization": authorization})
        if self.token and authorization != f"Bearer {self.token}":
            return 401, {"error": "missing or invalid bearer token"}
        if self.status != 200:
            return self.status, {"error": "boom"}
        since = float(query.get("since", ["0"])[0])
        kept = [s for s in self.samples if s["timestamp"] >= since]
        return 200, {"samples": kept, "buffer_size": 10000, "buffered": len(self.samples), "dropped_total": 0}


@pytest.fixture
def json_servers() -> Iterator[Callable[[JsonAnswer], str]]:
    """Factory: `json_servers(answer)` → the URL of a running serve_json server; all stop after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: JsonAnswer) -> str:
        servers.append(serve_json(answer))
        return server_url(servers[-1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_predictor(json_servers: Callable[[JsonAnswer], str]) -> Callable[..., FakePredictor]:
    """Factory: `fake_predictor(samples=[...], status=200, token=None)` → a running FakePredictor."""

    def start(**kwargs) -> FakePredictor:
        pod = FakePredictor(**kwargs)

        def answer(path: str, query: dict[str, list[str]], authorization: str | None) -> tuple[int, dict]:
            if path != "/v1/samples":
                return 404, {"error": "not found"}
            return pod.answer(query, authorization)

        pod.url = json_servers(answer)
        return pod

    return start


@pytest.fixture(scope="session")
def pushgateway(state_dir: Path) -> Iterator[stack.Process]:
    proc = stack.start_pushgateway(state_dir / "drift-monitor-pushgateway")
    yield proc
    proc.stop()


# ---------------------------------------------------------------- the Kubernetes API (EndpointSlices)

NAMESPACE = "mlops"
PREDICTOR_SERVICE = "mlops-predictor"
ENDPOINT_SLICES_PATH = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
HTTP_PORT = [{"name": "http", "protocol": "TCP", "port": 8080}]


def endpoint_slice(name: str, endpoints: list[dict], ports: list[dict], address_type: str = "IPv4") -> dict:
    """An EndpointSlice of the predictor Service as the endpointslice controller writes it."""
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": PREDICTOR_SERVICE,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": PREDICTOR_SERVICE,
                    "uid": "8c1f",
                    "controller": True,
                }
            ],
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports,
    }


def endpoint(ip: str, *, ready: bool | None, pod: str) -> dict:
    conditions = {} if ready is None else {"ready": ready, "serving": ready, "terminating": False}
    return {
        "addresses": [ip],
        "conditions": conditions,
        "nodeName": "minikube",
        "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": pod, "uid": f"uid-{pod}"},
    }


def endpoint_slice_list(items: list[dict]) -> dict:
    """One page of `GET .../endpointslices` without a continue token."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }


@dataclass
class FakeApiServer:
    """Answers `GET .../endpointslices` with the page for the request's `continue` token."""

    pages: dict[str | None, dict]
    queries: list[dict[str, list[str]]] = field(default_factory=list)
    status: int = 200
    url: str = ""

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        self.queries.append(query)
        if self.status != 200:
            return self.status, _status("Forbidden", self.status)
        if path != ENDPOINT_SLICES_PATH:
            return 404, _status("NotFound", 404)
        return 200, self.pages[query.get("continue", [None])[0]]


def _status(reason: str, code: int) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}


@pytest.fixture
def fake_kube_api(
    json_servers: Callable[[JsonAnswer], str],
) -> Callable[[dict[str | None, dict]], FakeApiServer]:
    """Factory: `fake_kube_api({None: first_page, token: next_page})` → a running FakeApiServer."""

    def start(pages: dict[str | None, dict]) -> FakeApiServer:
        fake = FakeApiServer(pages)
        fake.url = json_servers(lambda path, query, _authorization: fake.answer(path, query))
        return fake

    return start


# ---------------------------------------------------------------- the predictions ledger (quality check)

QUALITY_MODEL = "hotel-adr-quality-tests"  # its own registered model: versions with and without reference_mae


def prediction(pid: str, *, version: str, at: float, value: float, model_name: str = QUALITY_MODEL) -> dict:
    """A predictions row as the predictor writes it (id "<request id>:<row>", UTC time)."""
    return {
        "id": pid,
        "request_id": pid.split(":")[0],
        "model_name": model_name,
        "model_version": version,
        "predicted_at": datetime.fromtimestamp(at, UTC),
        "features": {"lead_time": 1},
        "prediction": value,
    }


@dataclass
class LedgerRows:
    """A ledger database migrated by the predictor's own code (predictor.ledger), filled through its own
    store, and the rows written, kept as plain records for the pandas cross-check."""

    url: str
    predictions: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        from predictor.ledger.store import LedgerStore, create_ledger_engine, migrate

        self.engine = create_ledger_engine(self.url)
        migrate(self.engine)
        self.store = LedgerStore(self.engine)

    def predict(self, *rows: dict) -> None:
        """Write predictions made with `prediction(...)`, in one batch as the predictor's writer does."""
        self.store.insert_predictions(list(rows))
        self.predictions.extend(rows)

    def label(self, pid: str, actual: float, *, received_at: float) -> None:
        from predictor.ledger.store import Label

        self.store.store_labels([Label(pid, actual)], now=datetime.fromtimestamp(received_at, UTC))
        self.labels = [lb for lb in self.labels if lb["id"] != pid]  # last write wins, as in the table
        self.labels.append({"id": pid, "actual": actual, "received_at": received_at})

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def ledger_rows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerRows]:
    """An empty, migrated ledger: an SQLite file, or a database of its own on the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        server: stack.PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    ledger = LedgerRows(url)
    yield ledger
    ledger.close()


@dataclass(frozen=True)
class QualityModel:
    tracking_uri: str
    name: str
    version: str
    """Registered from a run that logged reference_mae = REFERENCE_MAE."""
    version_without_metric: str
    """Registered from a run without a reference_mae metric (an older trainer's)."""
    reference_run_id: str


REFERENCE_MAE = 20.0


@pytest.fixture(scope="session")
def quality_model(mlflow_server: stack.Process) -> QualityModel:
    """Two versions in the real MLflow registry, as the trainer registers them (version → run → metrics)."""
    client = MlflowClient(mlflow_server.url)
    experiment_id = client.create_experiment("quality-tests")
    client.create_registered_model(QUALITY_MODEL)
    with_metric = client.create_run(experiment_id, run_name="with-reference-mae")
    client.log_metric(with_metric.info.run_id, "reference_mae", REFERENCE_MAE)
    client.log_metric(with_metric.info.run_id, "test_mae", 2 * REFERENCE_MAE)  # not the yardstick
    client.set_terminated(with_metric.info.run_id)
    without_metric = client.create_run(experiment_id, run_name="without-reference-mae")
    client.set_terminated(without_metric.info.run_id)
    versions = [
        client.create_model_version(
            QUALITY_MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        ).version
        for run in (with_metric, without_metric)
    ]
    return QualityModel(mlflow_server.url, QUALITY_MODEL, *versions, with_metric.info.run_id)
