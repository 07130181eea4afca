"""Following the alias in-process: a new version is served after one poll; a broken one is not."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from predictor import follower as follower_module
from predictor.errors import ModelLoadError
from predictor.follower import ModelFollower
from predictor.model import VersionRef
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


class FlakyRegistry:
    """Registry stand-in (the real one is exercised above): the alias points at v2, which never loads."""

    def __init__(self) -> None:
        self.loads = 0

    def resolve(self, name: str, alias: str) -> VersionRef:
        return VersionRef(name, alias, "2", None)

    def load(self, ref: VersionRef):
        self.loads += 1
        raise ModelLoadError("v2 is broken")

    def discard(self, model) -> None:
        pass


def test_broken_version_is_retried_with_backoff_not_every_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(follower_module.time, "monotonic", lambda: clock[0])
    registry = FlakyRegistry()
    follower = ModelFollower(registry, name="flaky", alias="champion", poll_interval=10)
    follower.current = type("Served", (), {"version": "1"})()  # serving v1 (only .version is read)

    async def poll_every_10s_for(seconds: int) -> None:
        for _ in range(seconds // 10):
            await follower.check()
            clock[0] += 10

    asyncio.run(poll_every_10s_for(600))
    # 60 polls, but downloads only at 0, 10, 30, 70, 150, 310 and 550 s (gaps double, capped at 240 s).
    assert registry.loads == 7
