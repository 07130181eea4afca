"""The load runner's arithmetic: Prometheus-style quantiles from the predictor's histogram deltas."""

from __future__ import annotations

import math

import pytest

from scripts.load.run import PREDICT_ROUTE, histogram_quantile, server_view


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 20 / 40)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 9 / 10)
    assert math.isnan(histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}))


def test_server_view_counts_only_the_predict_route_since_before() -> None:
    def sample(name: str, **labels: str) -> tuple:
        return (name, tuple(sorted(labels.items())))

    ok = {"route": PREDICT_ROUTE, "method": "POST", "status": "200"}
    failed = {**ok, "status": "503"}
    hist = {"route": PREDICT_ROUTE, "method": "POST"}
    before = {
        sample("predictor_http_requests_total", **ok): 10.0,
        sample("predictor_http_request_duration_seconds_bucket", **hist, le="0.05"): 10.0,
        sample("predictor_http_request_duration_seconds_bucket", **hist, le="+Inf"): 10.0,
    }
    after = {
        sample("predictor_http_requests_total", **ok): 108.0,
        sample("predictor_http_requests_total", **failed): 2.0,
        sample("predictor_http_requests_total", route="/metrics", method="GET", status="200"): 50.0,
        sample("predictor_http_request_duration_seconds_bucket", **hist, le="0.05"): 110.0,
        sample("predictor_http_request_duration_seconds_bucket", **hist, le="+Inf"): 110.0,
    }
    view = server_view(before, after)
    assert (view.requests, view.errors) == (100, 2)
    assert view.p50_ms == pytest.approx(25.0)
