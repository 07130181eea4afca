"""Following the alias in-process: a new version is served after one poll; a broken one is not."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.predictor.conftest import (
    BrokenOnLoad,
    TinyRegistry,
    fit_tiny_pipeline,
    records,
    tiny_frame,
    tiny_settings,
    wait_for,
)


@pytest.fixture
def registry(tiny_registry: TinyRegistry) -> TinyRegistry:
    """A registered model of our own (same store): these tests move its alias."""
    return tiny_registry.with_new_model()


def served_version(client, registry: TinyRegistry) -> str:
    return client.get(f"/v1/models/{registry.name}").json()["version"]


def predict(client, registry: TinyRegistry, rows: list[dict]) -> dict:
    response = client.post(f"/v1/models/{registry.name}:predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    return response.json()


def reloads(registry: TinyRegistry, outcome: str) -> float:
    labels = {"model_name": registry.name, "outcome": outcome}
    return REGISTRY.get_sample_value("predictor_model_reloads_total", labels) or 0


def test_alias_move_is_served_after_a_poll(make_client, registry) -> None:
    client = make_client(settings=tiny_settings(registry))
    successes = reloads(registry, "success")
    pipeline, X = fit_tiny_pipeline(seed=1)
    version = registry.log_version(pipeline, X, alias="champion")
    wait_for(lambda: served_version(client, registry) == version, timeout=10)
    body = predict(client, registry, records(tiny_frame(2)))
    assert body["model_version"] == version
    assert body["predictions"] == pipeline.predict(tiny_frame(2)).tolist()
    assert reloads(registry, "success") == successes + 1


def test_broken_version_keeps_the_old_one_and_counts_a_failure(make_client, registry) -> None:
    client = make_client(settings=tiny_settings(registry))
    failures = reloads(registry, "failure")
    registry.log_version(BrokenOnLoad(), tiny_frame(5), alias="champion")
    wait_for(lambda: reloads(registry, "failure") > failures, timeout=15)
    assert served_version(client, registry) == "1"
    assert predict(client, registry, records(tiny_frame(2)))["model_version"] == "1"


def test_version_with_other_inputs_is_not_swapped_in(make_client, registry) -> None:
    client = make_client(settings=tiny_settings(registry))
    failures = reloads(registry, "failure")
    pipeline, X = fit_tiny_pipeline(seed=2, city_column="town")
    registry.log_version(pipeline, X, alias="champion")
    wait_for(lambda: reloads(registry, "failure") > failures, timeout=15)
    assert served_version(client, registry) == "1"
