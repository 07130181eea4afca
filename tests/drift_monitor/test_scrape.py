"""Scraping /v1/samples from several pods: merged, filtered by time, one bad pod is not fatal."""

from __future__ import annotations

import time

from drift_monitor.scrape import scrape_samples
from scripts import local_stack as stack
from tests.drift_monitor.conftest import contract_samples


def test_samples_of_all_pods_are_merged_oldest_first(fake_predictor) -> None:
    now = time.time()
    a = fake_predictor(samples=contract_samples("normal", 30, seed=1, version="1", timestamp=now - 10))
    b = fake_predictor(samples=contract_samples("normal", 20, seed=2, version="2", timestamp=now - 20))

    result = scrape_samples([a.url, b.url], since=now - 60, token=None, timeout=5)

    assert (result.pods_scraped, result.pods_failed) == (2, 0)
    assert len(result.samples) == 50
    assert [s.timestamp for s in result.samples] == sorted(s.timestamp for s in result.samples)
    assert {s.model_version for s in result.samples} == {"1", "2"}
    first = result.samples[0]
    assert first.features["meal"] and isinstance(first.prediction, float)


def test_since_is_sent_so_only_the_window_comes_back(fake_predictor) -> None:
    now = time.time()
    old = contract_samples("normal", 10, seed=1, version="1", timestamp=now - 7200)
    recent = contract_samples("normal", 5, seed=2, version="1", timestamp=now - 5)
    pod = fake_predictor(samples=old + recent)

    result = scrape_samples([pod.url], since=now - 3600, token=None, timeout=5)

    assert len(result.samples) == 5
    assert float(pod.requests[0]["query"]["since"][0]) == round(now - 3600, 3)


def test_one_unreachable_and_one_failing_pod_are_counted_not_fatal(fake_predictor) -> None:
    now = time.time()
    good = fake_predictor(samples=contract_samples("normal", 10, seed=1, version="1", timestamp=now))
    failing = fake_predictor(status=500)
    unreachable = f"http://127.0.0.1:{stack.free_port()}"

    result = scrape_samples([good.url, failing.url, unreachable], since=now - 60, token=None, timeout=5)

    assert (result.pods_scraped, result.pods_failed) == (1, 2)
    assert len(result.samples) == 10
    assert result.errors[failing.url] == "HTTP 500"
    assert "ConnectError" in result.errors[unreachable]


def test_the_bearer_token_is_sent(fake_predictor) -> None:
    now = time.time()
    pod = fake_predictor(
        samples=contract_samples("normal", 3, seed=1, version="1", timestamp=now), token="s3cret"
    )

    without = scrape_samples([pod.url], since=now - 60, token=None, timeout=5)
    with_token = scrape_samples([pod.url], since=now - 60, token="s3cret", timeout=5)

    assert without.errors == {pod.url: "HTTP 401"}
    assert (with_token.pods_scraped, len(with_token.samples)) == (1, 3)


def test_a_body_that_breaks_the_contract_fails_only_that_pod(fake_predictor) -> None:
    now = time.time()
    broken = fake_predictor(samples=[{"timestamp": now, "features": {}}])  # no model_version, no prediction

    result = scrape_samples([broken.url], since=now - 60, token=None, timeout=5)

    assert result.pods_failed == 1
    assert "does not follow the contract" in result.errors[broken.url]
