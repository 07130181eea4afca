"""The predictor as it runs in a pod: its own process, a real MLflow server, the real champion model.

One predictor serves `hotel-adr@champion` for the whole module. The alias tests copy the champion into a
registered model of their own (`hotel-adr-predictor-test`), so the session's `champion` alias never moves.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sklearn.pipeline import Pipeline

from scripts import local_stack as stack
from scripts.load.run import PREDICT_ROUTE
from scripts.local_stack import wait_for
from scripts.traffic import sample_records
from tests.conftest import TrainedModel
from tests.predictor.conftest import BrokenOnLoad, TinyRegistry

pytestmark = pytest.mark.integration

FOLLOW_ALIAS = "predictor-test"
COPY_NAME = "hotel-adr-predictor-test"
POLL = "1"


@pytest.fixture(scope="module")
def predictor(state_dir: Path, champion: TrainedModel) -> Iterator[stack.Process]:
    # With a ledger, so the fuzzer reaches the feedback route's real answers (a 503 would fail its checks).
    ledger = {"PREDICTOR_LEDGER_DATABASE_URL": f"sqlite:///{state_dir / 'ledger-it.db'}"}
    proc = stack.start_predictor(state_dir, champion.tracking_uri, name="predictor-it", settings=ledger)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pipeline(champion: TrainedModel) -> Pipeline:
    """The champion exactly as the trainer logged it (the scikit-learn flavor, no MLflow wrapper)."""
    uri = MlflowClient(champion.tracking_uri).get_model_version_download_uri(champion.name, champion.version)
    return mlflow.sklearn.load_model(
        mlflow.artifacts.download_artifacts(uri, tracking_uri=champion.tracking_uri)
    )


def post(url: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/hotel-adr:predict", json=body, timeout=30, **kwargs)


@pytest.mark.parametrize(("mode", "n"), [("normal", 1), ("normal", 300), ("drift", 100)])
def test_predictions_equal_the_pipelines_own(predictor, pipeline, champion, mode, n) -> None:
    rows = sample_records(mode, n, seed=n)
    response = post(predictor.url, {"instances": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    # The champion is a tree pipeline the compiled path recognises: treelite sums the trees in another
    # order, so within 1e-9 relative (what its load-time proof guarantees), not bit for bit.
    np.testing.assert_allclose(body["predictions"], pipeline.predict(pd.DataFrame(rows)), rtol=1e-9, atol=0)
    assert body["model_version"] == champion.version


def test_mlflow_bodies_give_the_same_predictions(predictor) -> None:
    rows = sample_records("normal", 20, seed=3)
    expected = post(predictor.url, {"instances": rows}).json()["predictions"]
    columns = list(rows[0])
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    assert post(predictor.url, {"dataframe_records": rows}).json()["predictions"] == expected
    assert post(predictor.url, {"dataframe_split": split}).json()["predictions"] == expected


def test_metadata_names_the_champion(predictor, champion) -> None:
    body = httpx.get(f"{predictor.url}/v1/models/hotel-adr").json()
    assert (body["ready"], body["version"], body["run_id"], body["alias"]) == (
        True,
        champion.version,
        champion.run_id,
        "champion",
    )


@pytest.fixture(scope="module")
def api_schema(predictor):
    return schemathesis.openapi.from_url(f"{predictor.url}/openapi.json")


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_never_gets_a_server_error(case) -> None:
    # Schema-valid `dataframe_split` rows can still disagree with `columns` (JSON Schema cannot say so): 422 is right.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


# ---- following the alias, with real processes


def copy_version(client: MlflowClient, version) -> str:
    """Register the same logged model again under COPY_NAME (MLflow 3: source `models:/<model_id>`)."""
    model_id = version.model_id or version.source.removeprefix("models:/")
    return client.create_model_version(
        COPY_NAME, version.source, run_id=version.run_id, model_id=model_id
    ).version


@pytest.fixture(scope="module")
def copy_registry(champion: TrainedModel) -> TinyRegistry:
    """`hotel-adr-predictor-test` version 1 = the champion's logged model, under the alias we move."""
    client = MlflowClient(champion.tracking_uri)
    client.create_registered_model(COPY_NAME)
    copy_version(client, client.get_model_version(champion.name, champion.version))
    client.set_registered_model_alias(COPY_NAME, FOLLOW_ALIAS, "1")
    experiment_id = client.create_experiment("predictor-tests")
    return TinyRegistry(champion.tracking_uri, COPY_NAME, client, experiment_id)


@pytest.fixture
def follower(state_dir: Path, copy_registry: TinyRegistry) -> Iterator[stack.Process]:
    copy_registry.client.set_registered_model_alias(COPY_NAME, FOLLOW_ALIAS, "1")
    settings = {
        "PREDICTOR_MODEL_NAME": COPY_NAME,
        "PREDICTOR_MODEL_ALIAS": FOLLOW_ALIAS,
        "PREDICTOR_POLL_INTERVAL_SECONDS": POLL,
    }
    proc = stack.start_predictor(
        state_dir, copy_registry.tracking_uri, name="predictor-follower", settings=settings
    )
    yield proc
    proc.stop()


def served_version(url: str) -> str:
    return httpx.get(f"{url}/v1/models/{COPY_NAME}").json()["version"]


def scrape_metrics(url: str) -> list:
    return [
        s
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for s in family.samples
    ]


def total(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples of that name with those labels (0 when absent)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def reloads(url: str, outcome: str) -> float:
    return total(scrape_metrics(url), "predictor_model_reloads_total", outcome=outcome)


def test_alias_move_is_served_within_the_poll_interval_without_failed_requests(
    follower, copy_registry
) -> None:
    client = copy_registry.client
    new = copy_version(client, client.get_model_version(COPY_NAME, "1"))
    rows = sample_records("normal", 64, seed=11)
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=follower.url, timeout=30) as http:
            i = worker
            while not stop.is_set():
                response = http.post(
                    f"/v1/models/{COPY_NAME}:predict", json={"instances": [rows[i % len(rows)]]}
                )
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions[response.json()["model_version"]] += 1
                i += 4

    with ThreadPoolExecutor(4) as pool:
        for worker in range(4):
            pool.submit(hammer, worker)
        wait_for(lambda: versions["1"] >= 20, timeout=30, what="load on version 1")
        moved_at = time.monotonic()
        client.set_registered_model_alias(COPY_NAME, FOLLOW_ALIAS, new)
        wait_for(lambda: served_version(follower.url) == str(new), timeout=30)
        swap_seconds = time.monotonic() - moved_at
        wait_for(lambda: versions[str(new)] >= 20, timeout=30, what=f"load on version {new}")
        stop.set()
    assert set(statuses) == {200}, statuses
    assert set(versions) == {"1", str(new)}, versions
    # One poll interval, plus loading the model on this 2-core machine.
    assert swap_seconds < float(POLL) + 15, swap_seconds


def test_broken_version_keeps_the_served_one(follower, copy_registry) -> None:
    failures = reloads(follower.url, "failure")
    broken = copy_registry.log_version(
        BrokenOnLoad(), pd.DataFrame(sample_records("normal", 3)), alias=FOLLOW_ALIAS
    )
    wait_for(lambda: reloads(follower.url, "failure") > failures, timeout=30)
    assert served_version(follower.url) == "1"
    response = post(follower.url, {"instances": sample_records("normal", 2)}).status_code
    assert response == 404  # this predictor serves COPY_NAME, not hotel-adr
    ok = httpx.post(
        f"{follower.url}/v1/models/{COPY_NAME}:predict", json={"instances": sample_records("normal", 2)}
    )
    assert ok.status_code == 200 and ok.json()["model_version"] == "1"
    assert broken != "1"


def test_sigterm_finishes_in_flight_requests(follower) -> None:
    url = f"{follower.url}/v1/models/{COPY_NAME}:predict"

    def answered(samples: list) -> float:
        return total(samples, "predictor_http_requests_total", route=PREDICT_ROUTE)

    answered_before = answered(scrape_metrics(follower.url))

    def all_six_received_and_some_in_flight() -> bool:
        samples = scrape_metrics(follower.url)  # one scrape: the gauge and the counter at the same moment
        in_flight = total(samples, "predictor_http_requests_in_flight") - 1  # minus this scrape
        return in_flight >= 1 and in_flight + answered(samples) - answered_before == 6

    # One client, one encoded body: the six requests leave together (no per-request client or JSON
    # encoding queueing on the GIL), so the server holds several at once.
    body = json.dumps({"instances": sample_records("normal", 1000, seed=5)}).encode()
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=60) as http, ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(http.post, url, content=body, headers=headers) for _ in range(6)]
        wait_for(all_six_received_and_some_in_flight, timeout=30, interval=0.01, what="six requests received")
        # A drained shutdown exits 0, so Kubernetes shows a stopped pod as Completed, not Error.
        assert follower.stop(timeout=30) == 0
        assert [f.result().status_code for f in futures] == [200] * 6
    assert "Application shutdown complete" in follower.log_tail()
