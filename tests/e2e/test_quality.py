"""Delayed labels on the session's loop (tests/conftest.py): two predictors writing one PostgreSQL ledger,
the drift monitor's quality check, Pushgateway, Prometheus with our rules, Alertmanager.

Normal traffic with its true prices → quality in line with the training yardstick, no alert; summer 2017
traffic with its true prices → the champion's MAE about twice the yardstick and ModelQualityDegraded
firing, routed by Alertmanager. The monitor's numbers must equal a pandas computation on the same rows.
"""

from __future__ import annotations

import math
import time
import uuid

import httpx
import numpy as np
import pytest

from scripts import labels as label_feed
from scripts import local_stack as stack
from tests.conftest import TrainedModel

pytestmark = pytest.mark.e2e

ROWS = 400  # ≥ DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS (100) with room
LABEL_DELAY_SECONDS = 2
# The JSON report keeps 4 significant digits; tests/drift_monitor/test_quality.py checks the unrounded
# figures against pandas to 1e-9.
REPORT_PRECISION = 5e-4


def run_quality(loop: stack.Loop, ledger_url: str, window_seconds: float) -> dict:
    """One monitor run (drift part included, as the CronJob does) whose quality window is the last phase."""
    code, report, log = stack.run_drift_monitor(
        loop,
        window_seconds=window_seconds,
        env={
            "DRIFT_MONITOR_LEDGER_DATABASE_URL": ledger_url,
            "DRIFT_MONITOR_LABEL_DELAY_SECONDS": str(LABEL_DELAY_SECONDS),
            "DRIFT_MONITOR_QUALITY_WINDOW_SECONDS": str(math.ceil(window_seconds)),
        },
    )
    assert code == 0 and report is not None, log[-4000:]
    return report["quality"]


def labelled_phase(loop: stack.Loop, mode: str) -> tuple[label_feed.LabelledTraffic, float]:
    """Send the window's rows with ids, wait until the ledger has them, post their labels after the delay."""
    started = time.time()
    before = label_feed.ledger_counts(loop.predictor_urls)
    sent = label_feed.send(
        loop.predictor_urls, mode, rows=ROWS, prefix=f"{mode}-{uuid.uuid4().hex[:8]}", seed=11
    )
    assert sent.failures == [] and len(sent.ids) == ROWS
    last_sent = time.time()

    def written() -> bool:
        now = label_feed.ledger_counts(loop.predictor_urls)
        return (
            now["predictor_ledger_written_rows_total"] - before["predictor_ledger_written_rows_total"] >= ROWS
        )

    stack.wait_for(written, timeout=60, what=f"{ROWS} rows written to the ledger")
    after = label_feed.ledger_counts(loop.predictor_urls)
    dropped = after["predictor_ledger_dropped_rows_total"] - before["predictor_ledger_dropped_rows_total"]
    assert dropped == 0
    # Labels arrive later than predictions; the monitor counts only predictions older than the delay,
    # so every row of the phase has matured once the delay has passed since the last one was sent.
    stack.wait_for(lambda: time.time() - last_sent > LABEL_DELAY_SECONDS, what="the label delay")
    totals = label_feed.post_labels(loop.predictor_urls[0], sent.labels())
    assert totals["stored"] == ROWS and totals["matched"] == ROWS and totals["unmatched"] == 0
    return sent, started


def expected_quality(sent: label_feed.LabelledTraffic) -> dict[str, float]:
    error = np.array(sent.predictions) - np.array(sent.actuals)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(np.mean(error)),
    }


def promql(prometheus_url: str, query: str) -> list[dict]:
    return httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()["data"][
        "result"
    ]


def version_quality(quality: dict, version: str) -> dict:
    [found] = [v for v in quality["versions"] if v["model_version"] == version]
    return found


def test_labels_judge_the_champion_and_only_a_worse_model_alerts(
    loop: stack.Loop, loop_ledger_url: str, champion: TrainedModel
) -> None:
    # Normal traffic: rows like the ones the champion was fitted on; quality at or below the yardstick.
    normal, started = labelled_phase(loop, "normal")
    quality = run_quality(loop, loop_ledger_url, time.time() - started + 1)
    seen = version_quality(quality, champion.version)
    assert seen["labelled_rows"] == ROWS
    for key, value in expected_quality(normal).items():
        assert seen[key] == pytest.approx(value, rel=REPORT_PRECISION), key
    assert seen["reference_mae"] > 0 and seen["mae_ratio"] < 1.0 and seen["degraded"] is False

    assert loop.prometheus
    prometheus = loop.prometheus.url
    mae_now = f'model_quality_mae{{model_name="hotel-adr",model_version="{champion.version}"}}'
    stack.wait_for(
        lambda: [r for r in promql(prometheus, mae_now) if abs(float(r["value"][1]) - seen["mae"]) < 1e-3],
        timeout=60,
        what="this run's quality series scraped from the Pushgateway",
    )
    # Evaluated on these series, the rule holds no alert (pending or firing) for the version.
    stack.wait_for(
        lambda: stack.prometheus_alerts(prometheus, "ModelQualityDegraded") == [],
        timeout=60,
        what="no ModelQualityDegraded on normal traffic's quality",
    )

    # Summer 2017 with its true prices: the champion predicts too low, by about 20.
    summer, started = labelled_phase(loop, "drift")
    quality = run_quality(loop, loop_ledger_url, time.time() - started + 1)
    seen = version_quality(quality, champion.version)
    expected = expected_quality(summer)
    assert seen["labelled_rows"] == ROWS
    for key, value in expected.items():
        assert seen[key] == pytest.approx(value, rel=REPORT_PRECISION), key
    assert seen["bias"] < -10
    assert seen["mae_ratio"] > quality["max_mae_ratio"] and seen["degraded"] is True

    fired, routed = stack.wait_for_alert(loop, "ModelQualityDegraded", timeout=240)
    assert fired["labels"]["model_version"] == champion.version
    assert routed["labels"]["alertname"] == "ModelQualityDegraded"
