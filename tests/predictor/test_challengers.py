"""Champion and challengers in one predictor, on a real (SQLite) MLflow registry with real registered versions:
the shadow scores what was served and never changes a response, the canary answers a sticky share of users,
and either alias moving is followed without a restart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from pydantic import ValidationError

from predictor.canary import bucket
from predictor.config import Settings
from predictor.ledger.tables import predictions
from scripts.local_stack import wait_for
from tests.predictor.conftest import (
    BrokenOnLoad,
    TinyRegistry,
    fit_tiny_pipeline,
    records,
    tiny_frame,
    tiny_settings,
)
from tests.predictor.test_follower import predict, served_version


class FailsOnPredict(mlflow.pyfunc.PythonModel):
    """Loads (no input example, so no smoke test) and fails on every call: a broken challenger."""

    def predict(self, context, model_input, params=None):
        raise RuntimeError("this challenger is broken on purpose")


class SlowOnPredict(mlflow.pyfunc.PythonModel):
    """A challenger far slower than the champion, to fill the shadow's queue."""

    def predict(self, context, model_input, params=None):
        import time

        time.sleep(0.3)
        return np.zeros(len(model_input))


class SlowPerRow(mlflow.pyfunc.PythonModel):
    """A challenger whose cost grows with the rows (50 ms each), so combining batches does not hide it."""

    def predict(self, context, model_input, params=None):
        import time

        time.sleep(0.05 * len(model_input))
        return np.zeros(len(model_input))


@pytest.fixture
def registry(tiny_registry: TinyRegistry) -> TinyRegistry:
    """Our own registered model: version 1 (`champion`) and version 2 (`challenger`), fitted on other data."""
    registry = tiny_registry.with_new_model()
    pipeline, X = fit_tiny_pipeline(seed=1)
    registry.log_version(pipeline, X, alias="challenger")
    return registry


def _load(registry: TinyRegistry, version: str):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry.tracking_uri)
    try:
        return mlflow.sklearn.load_model(f"models:/{registry.name}/{version}")
    finally:
        mlflow.set_tracking_uri(previous)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def challenger_of(client, registry: TinyRegistry, role: str) -> dict:
    metadata = client.get(f"/v1/models/{registry.name}").json()
    return next(c for c in metadata["challengers"] if c["role"] == role)


def test_shadow_scores_every_row_and_never_changes_the_response(make_client, registry) -> None:
    client = make_client(settings=tiny_settings(registry, shadow_alias="challenger"))
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"], interval=0.05)
    frame = tiny_frame(40, seed=7)
    champion, challenger = _load(registry, "1"), _load(registry, "2")
    scored_before = metric("predictor_shadow_predictions_total", model_name=registry.name, model_version="2")

    body = predict(client, registry, records(frame))

    assert body["model_version"] == "1" and body["model_alias"] == "champion"
    np.testing.assert_allclose(body["predictions"], champion.predict(frame), rtol=0, atol=1e-9)
    samples = wait_for(
        lambda: [
            s for s in client.get("/v1/samples").json()["samples"] if s["request_id"] == body["request_id"]
        ],
        interval=0.05,
    )
    assert len(samples) == 40
    assert {s["shadow_version"] for s in samples} == {"2"}
    np.testing.assert_allclose([s["prediction"] for s in samples], body["predictions"], rtol=0, atol=0)
    np.testing.assert_allclose(
        [s["shadow_prediction"] for s in samples], challenger.predict(frame), rtol=0, atol=1e-9
    )
    assert not np.allclose(challenger.predict(frame), champion.predict(frame))  # the test can tell them apart
    scored = metric("predictor_shadow_predictions_total", model_name=registry.name, model_version="2")
    assert scored == scored_before + 40
    labels = {"model_name": registry.name, "model_version": "1", "shadow_version": "2"}
    assert metric("predictor_shadow_absolute_difference_count", **labels) >= 40


def test_a_failing_shadow_never_fails_a_request_and_trips_the_breaker(make_client, registry) -> None:
    registry.log_version(FailsOnPredict(), tiny_frame(5), alias="challenger")
    settings = tiny_settings(
        registry, shadow_alias="challenger", shadow_breaker_failures=2, shadow_breaker_seconds=600
    )
    client = make_client(settings=settings)
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"], interval=0.05)
    failed_before = metric("predictor_shadow_dropped_rows_total", reason="failed")
    open_before = metric("predictor_shadow_dropped_rows_total", reason="breaker_open")
    champion = _load(registry, "1")

    def served_equal_champion(seed: int) -> None:
        frame = tiny_frame(5, seed=seed)
        body = predict(client, registry, records(frame))
        np.testing.assert_allclose(body["predictions"], champion.predict(frame), rtol=0, atol=1e-9)

    for seed in range(2):  # two failures in a row, each awaited so the count is exact
        served_equal_champion(seed)
        expected = failed_before + 5 * (seed + 1)
        wait_for(lambda n=expected: metric("predictor_shadow_dropped_rows_total", reason="failed") == n)
    wait_for(lambda: metric("predictor_shadow_breaker_open") == 1, interval=0.05)
    for seed in range(2, 4):  # the breaker is open: not even tried
        served_equal_champion(seed)
    assert metric("predictor_shadow_dropped_rows_total", reason="breaker_open") == open_before + 10
    assert metric("predictor_shadow_dropped_rows_total", reason="failed") == failed_before + 10
    assert client.get("/readyz").status_code == 200
    # The rows the shadow could not score were served and kept all the same, without a shadow prediction.
    wait_for(lambda: len(client.get("/v1/samples").json()["samples"]) >= 20, interval=0.05)
    assert all("shadow_version" not in s for s in client.get("/v1/samples").json()["samples"])


def test_a_challenger_that_cannot_load_leaves_the_champion_serving(make_client, registry) -> None:
    registry.log_version(BrokenOnLoad(), tiny_frame(5), alias="challenger")
    client = make_client(
        settings=tiny_settings(registry, shadow_alias="challenger", canary_alias="challenger")
    )
    labels = {
        "model_name": registry.name,
        "model_alias": "challenger",
        "role": "shadow+canary",  # one alias in both roles: one follower, one load
        "outcome": "failure",
    }
    wait_for(lambda: metric("predictor_challenger_reloads_total", **labels) >= 1, interval=0.05)
    assert client.get("/readyz").status_code == 200
    assert challenger_of(client, registry, "shadow") == {
        "role": "shadow",
        "alias": "challenger",
        "version": None,
        "ready": False,
    }
    assert predict(client, registry, records(tiny_frame(3)))["model_version"] == "1"
    assert metric("predictor_model_reloads_total", model_name=registry.name, outcome="failure") == 0


def test_a_missing_challenger_alias_is_not_an_error(make_client, tiny_registry) -> None:
    registry = tiny_registry.with_new_model()  # no `challenger` alias at all
    client = make_client(settings=tiny_settings(registry, shadow_alias="challenger"))
    assert predict(client, registry, records(tiny_frame(3)))["model_version"] == "1"
    assert challenger_of(client, registry, "shadow")["ready"] is False


def test_canary_share_is_within_tolerance_and_sticky_by_routing_key(make_client, registry) -> None:
    client = make_client(settings=tiny_settings(registry, canary_alias="challenger", canary_percent=30))
    wait_for(lambda: challenger_of(client, registry, "canary")["ready"], interval=0.05)
    frame = tiny_frame(1, seed=3)
    row = records(frame)
    champion, challenger = _load(registry, "1"), _load(registry, "2")

    def answer(key: str) -> dict:
        response = client.post(
            f"/v1/models/{registry.name}:predict", json={"instances": row}, headers={"X-Routing-Key": key}
        )
        assert response.status_code == 200, response.text
        return response.json()

    keys = [f"user-{i}" for i in range(600)]
    answers = {key: answer(key) for key in keys}
    canary_keys = {k for k, a in answers.items() if a["model_version"] == "2"}
    assert 0.30 - 0.06 <= len(canary_keys) / len(keys) <= 0.30 + 0.06
    assert canary_keys == {k for k in keys if bucket(k) < 3000}  # the hash decides, not chance
    for key, body in answers.items():
        expected = challenger if key in canary_keys else champion
        assert body["model_alias"] == ("challenger" if key in canary_keys else "champion")
        np.testing.assert_allclose(body["predictions"], expected.predict(frame), rtol=0, atol=1e-9)
    for key in keys[:50]:  # sticky: the same user gets the same version again
        assert answer(key)["model_version"] == answers[key]["model_version"]
    # Without a routing key the request id decides: a client-chosen id is sticky too.
    ids = {
        client.post(
            f"/v1/models/{registry.name}:predict",
            json={"instances": row},
            headers={"X-Request-ID": "same-id"},
        ).json()["model_version"]
        for _ in range(5)
    }
    assert len(ids) == 1


def test_moves_of_either_alias_are_followed_without_restart(make_client, registry) -> None:
    client = make_client(settings=tiny_settings(registry, shadow_alias="challenger"))
    wait_for(lambda: challenger_of(client, registry, "shadow")["version"] == "2", interval=0.05)
    pipeline, X = fit_tiny_pipeline(seed=2)
    registry.log_version(pipeline, X, alias="challenger")  # version 3
    wait_for(lambda: challenger_of(client, registry, "shadow")["version"] == "3", interval=0.05)
    assert info_versions(registry) == {("champion", "1"), ("challenger", "3")}  # each alias its own series

    registry.client.set_registered_model_alias(registry.name, "champion", "2")  # a promotion
    wait_for(lambda: served_version(client, registry) == "2", interval=0.05)
    assert challenger_of(client, registry, "shadow")["version"] == "3"

    registry.client.delete_registered_model_alias(registry.name, "challenger")  # the challenger retired
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"] is False, interval=0.05)
    body = predict(client, registry, records(tiny_frame(2)))
    assert body["model_version"] == "2"
    samples = wait_for(
        lambda: [
            s for s in client.get("/v1/samples").json()["samples"] if s["request_id"] == body["request_id"]
        ],
        interval=0.05,
    )
    assert all("shadow_version" not in s for s in samples)
    assert info_versions(registry) == {("champion", "2")}


def info_versions(registry: TinyRegistry) -> set[tuple[str, str]]:
    return {
        (sample.labels["model_alias"], sample.labels["model_version"])
        for family in REGISTRY.collect()
        if family.name == "predictor_model_info"
        for sample in family.samples
        if sample.labels["model_name"] == registry.name and sample.value == 1
    }


def test_a_slow_shadow_drops_its_share_but_every_served_row_is_kept(make_client, registry) -> None:
    registry.log_version(SlowOnPredict(), tiny_frame(5), alias="challenger")
    client = make_client(settings=tiny_settings(registry, shadow_alias="challenger", shadow_queue_batches=1))
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"], interval=0.05)
    dropped_before = metric("predictor_shadow_dropped_rows_total", reason="queue_full")

    with ThreadPoolExecutor(8) as pool:
        bodies = list(
            pool.map(lambda seed: predict(client, registry, records(tiny_frame(3, seed=seed))), range(24))
        )

    ids = {b["request_id"] for b in bodies}
    wait_for(
        lambda: len([s for s in client.get("/v1/samples").json()["samples"] if s["request_id"] in ids]) == 72,
        timeout=60,
        interval=0.1,
    )
    assert metric("predictor_shadow_dropped_rows_total", reason="queue_full") > dropped_before


def test_the_ledger_records_the_answering_alias_and_the_shadow_prediction(
    make_client, registry, tmp_path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    client = make_client(settings=tiny_settings(registry, shadow_alias="challenger", ledger_database_url=url))
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"], interval=0.05)
    frame = tiny_frame(12, seed=5)
    body = predict(client, registry, records(frame))
    engine = sa.create_engine(url)

    def rows() -> list:
        with engine.connect() as connection:
            query = sa.select(predictions).where(predictions.c.request_id == body["request_id"])
            return list(connection.execute(query.order_by(predictions.c.id)))

    stored = wait_for(lambda: len(rows()) == 12 and rows(), interval=0.1)
    by_id = {row.id: row for row in stored}
    ordered = [by_id[pid] for pid in body["prediction_ids"]]
    assert {(r.model_version, r.model_alias, r.shadow_version) for r in ordered} == {("1", "champion", "2")}
    np.testing.assert_allclose([r.prediction for r in ordered], body["predictions"], rtol=0, atol=0)
    np.testing.assert_allclose(
        [r.shadow_prediction for r in ordered], _load(registry, "2").predict(frame), rtol=0, atol=1e-9
    )
    engine.dispose()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shadow_alias": "champion"}, "PREDICTOR_SHADOW_ALIAS must name another alias"),
        (
            {"canary_alias": "champion", "canary_percent": 10},
            "PREDICTOR_CANARY_ALIAS must name another alias",
        ),
        ({"canary_percent": 10}, "PREDICTOR_CANARY_PERCENT is set but PREDICTOR_CANARY_ALIAS is not"),
        ({"canary_alias": "challenger", "canary_percent": 101}, "less than or equal to 100"),
    ],
)
def test_challenger_settings_are_checked(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)


def test_buckets_spread_evenly() -> None:
    counts = np.bincount([bucket(f"k{i}") // 1000 for i in range(20_000)], minlength=10)
    assert counts.min() > 1_800 and counts.max() < 2_200
    assert bucket("same") == bucket("same")


def test_shutdown_records_every_served_row_even_with_a_slow_shadow(make_client, registry, tmp_path) -> None:
    """Stopping while the shadow lags: what it cannot score in time is recorded without it, before the
    ledger's last flush, so every acknowledged row is in the ledger."""
    registry.log_version(SlowPerRow(), tiny_frame(5), alias="challenger")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    settings = tiny_settings(
        registry, shadow_alias="challenger", ledger_database_url=url, microbatch_max_rows=6
    )  # at most 6 rows per shadow call: 0.3 s each, the 120 rows take 6 s, past the 2 s stop budget
    client = make_client(settings=settings)
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"], interval=0.05)
    shutdown_before = metric("predictor_shadow_dropped_rows_total", reason="shutdown")

    with ThreadPoolExecutor(8) as pool:
        bodies = list(
            pool.map(lambda seed: predict(client, registry, records(tiny_frame(3, seed=seed))), range(40))
        )
    client.__exit__(None, None, None)  # at once: the shadow is still busy with the first batches

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        stored = set(connection.execute(sa.select(predictions.c.id)).scalars())
    engine.dispose()
    assert stored == {pid for body in bodies for pid in body["prediction_ids"]}
    assert metric("predictor_shadow_dropped_rows_total", reason="shutdown") > shutdown_before


def test_combined_shadow_calls_keep_each_row_with_its_own_prediction(make_client, registry) -> None:
    """The shadow scores many served batches in one call; every row still gets its own shadow value."""
    client = make_client(settings=tiny_settings(registry, shadow_alias="challenger"))
    wait_for(lambda: challenger_of(client, registry, "shadow")["ready"], interval=0.05)
    challenger = _load(registry, "2")
    frames = {seed: tiny_frame(1 + seed % 4, seed=100 + seed) for seed in range(30)}
    calls_before = metric(
        "predictor_shadow_batch_duration_seconds_count", model_name=registry.name, model_version="2"
    )

    with ThreadPoolExecutor(8) as pool:
        bodies = dict(
            zip(
                frames,
                pool.map(lambda f: predict(client, registry, records(f)), frames.values()),
                strict=True,
            )
        )

    def shadow_values(request_id: str) -> list:
        samples = client.get("/v1/samples").json()["samples"]
        return [s.get("shadow_prediction") for s in samples if s["request_id"] == request_id]

    for seed, body in bodies.items():
        values = wait_for(lambda b=body: (v := shadow_values(b["request_id"])) and None not in v and v)
        np.testing.assert_allclose(values, challenger.predict(frames[seed]), rtol=0, atol=1e-9)
    calls = metric(
        "predictor_shadow_batch_duration_seconds_count", model_name=registry.name, model_version="2"
    )
    assert calls - calls_before < len(frames)  # fewer model calls than requests
