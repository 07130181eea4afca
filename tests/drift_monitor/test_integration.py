"""The drift monitor in the real loop, every process on 127.0.0.1: MLflow with the champion trained by
`trainer train`, two predictor processes, Pushgateway, Prometheus loading charts/mlops/rules/alerts.yaml,
and Alertmanager with charts/mlops/files/alertmanager.yml.

1. rows from the training period → `drift-monitor` → no drift, no DataDriftDetected;
2. rows from summer 2017 → `drift-monitor` → drift on the seasonal features, DataDriftDetected
   fires in Prometheus (/api/v1/alerts) and reaches Alertmanager (/api/v2/alerts).

This module owns that scenario, the slowest of the suite (the alert's `for: 1m`); the e2e tests share
its loop (tests/conftest.py) for what they add. `pytest -m integration tests/drift_monitor -s` prints
the drift table of both runs.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from scripts import local_stack as stack
from scripts.traffic import sample_records

pytestmark = pytest.mark.integration

ROWS_PER_PREDICTOR = 600
BATCH = 100
SEASONAL = {"arrival_month", "historical_adr"}
RULE_INTERVAL_SECONDS = 2  # the local Prometheus' evaluation interval (scripts/local_stack.py)


def send_traffic(loop: stack.Loop, mode: str, seed: int) -> float:
    """ROWS_PER_PREDICTOR rows of a window to each predictor, in batches; returns when it started."""
    started = time.time()
    for i, predictor in enumerate(loop.predictors):
        rows = sample_records(mode, ROWS_PER_PREDICTOR, seed=seed + i)
        for start in range(0, len(rows), BATCH):
            response = httpx.post(
                f"{predictor.url}/v1/models/hotel-adr:predict",
                json={"instances": rows[start : start + BATCH]},
                timeout=30,
            )
            assert response.status_code == 200, response.text[:500]
    return started


def monitor(loop: stack.Loop, since: float) -> dict:
    # +2 s: the window ends when the monitor process starts, a moment after this line.
    code, report, log = stack.run_drift_monitor(loop, window_seconds=time.time() - since + 2)
    assert code == 0, log[-3000:]
    assert (report["pods_scraped"], report["pods_failed"]) == (2, 0)
    (version,) = report["versions"]
    assert version["samples"] == 2 * ROWS_PER_PREDICTOR
    print_table(version, report["duration_seconds"])
    return version


def print_table(version: dict, seconds: float) -> None:
    print(f"\nhotel-adr v{version['model_version']}: {version['samples']} samples, run {seconds:.2f} s")
    print(f"  {'feature':32} {'test':5} {'p-value':>10} {'PSI':>7}")
    for f in sorted(version["features"], key=lambda f: f["p_value"]):
        print(
            f"  {f['feature']:32} {f['test']:5} {f['p_value']:10.2e} {f['effect_size']:7.3f}{'  DRIFT' if f['drifted'] else ''}"
        )
    p = version["prediction"]
    print(
        f"  {'(prediction)':32} {'ks':5} {p['p_value']:10.2e} {p['effect_size']:7.3f}{'  DRIFT' if p['drifted'] else ''}"
    )


def prometheus_value(loop: stack.Loop, query: str) -> list[dict]:
    response = httpx.get(f"{loop.prometheus.url}/api/v1/query", params={"query": query}, timeout=5)
    return response.json()["data"]["result"]


def last_evaluation(loop: stack.Loop, alert: str) -> float:
    """When Prometheus last evaluated that alerting rule (unix seconds)."""
    response = httpx.get(f"{loop.prometheus.url}/api/v1/rules", params={"type": "alert"}, timeout=5)
    rules = [r for g in response.json()["data"]["groups"] for r in g["rules"] if r["name"] == alert]
    return datetime.fromisoformat(rules[0]["lastEvaluation"]).timestamp()


def test_training_period_traffic_raises_no_drift_alert(loop: stack.Loop) -> None:
    version = monitor(loop, since=send_traffic(loop, "normal", seed=100))

    assert version["enough_data"] is True
    assert version["drift_detected"] is False, version["drifted_features"]
    assert version["prediction"]["drifted"] is False
    # Prometheus has the verdict from the Pushgateway; let the rules evaluate it twice.
    selector = f'drift_detected{{model_version="{version["model_version"]}"}} == 0'
    stack.wait_for(lambda: prometheus_value(loop, selector), 30, what="the no-drift verdict in Prometheus")
    seen = time.time()
    stack.wait_for(
        lambda: last_evaluation(loop, "DataDriftDetected") > seen + RULE_INTERVAL_SECONDS,
        30,
        what="two evaluations of DataDriftDetected on the verdict",
    )
    assert stack.prometheus_alerts(loop.prometheus.url, "DataDriftDetected") == []
    assert stack.alertmanager_alerts(loop.alertmanager.url, "DataDriftDetected") == []


def test_summer_traffic_fires_data_drift_detected(loop: stack.Loop) -> None:
    version = monitor(loop, since=send_traffic(loop, "drift", seed=200))

    assert version["drift_detected"] is True
    assert set(version["drifted_features"]) >= SEASONAL
    assert version["prediction"]["drifted"] is True

    fired, routed = stack.wait_for_alert(loop, "DataDriftDetected", timeout=120)
    for alert in (fired, routed):
        assert alert["labels"]["model_name"] == "hotel-adr"
        assert alert["labels"]["model_version"] == version["model_version"]
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"].endswith("/docs/runbook.md#datadriftdetected")
    assert routed["status"]["state"] == "active"
    assert {r["name"] for r in routed["receivers"]} == {"retraining-webhook", "default"}
