"""The demo path as a test: real MLflow, two predictor processes, Pushgateway, Prometheus with our
rules, Alertmanager, locust traffic and the drift-monitor CLI, all on 127.0.0.1.

1. normal traffic → the monitor finds no drift → no DataDriftDetected alert;
2. summer traffic → drift on the seasonal features → DataDriftDetected fires and reaches Alertmanager;
3. under continuous locust load a retrain moves the alias → every replica serves the new version
   within the poll interval and locust counts zero failures.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests import stack
from tests.conftest import TrainedModel
from tests.load.run import Load, finish, run_load, scrape, start_locust

pytestmark = pytest.mark.e2e

POLL_INTERVAL = 2  # seconds; the chart's default is 30


@pytest.fixture(scope="module")
def loop(champion: TrainedModel, mlflow_server: stack.Process, state_dir: Path) -> Iterator[stack.Loop]:
    with stack.local_stack(state_dir / "e2e") as s:
        yield stack.start_loop(
            s, mlflow_server, predictor_settings={"PREDICTOR_POLL_INTERVAL_SECONDS": str(POLL_INTERVAL)}
        )


def send_traffic(loop: stack.Loop, mode: str, report_dir: Path, seconds: int = 6) -> float:
    """Locust against each replica (standing in for the Service); returns when the traffic started."""
    started = time.time()
    load = Load(users=4, spawn_rate=4, duration=f"{seconds}s", mode=mode)
    results = run_load({p.name: p.url for p in loop.predictors}, load, report_dir)
    for result in results.values():
        assert result.ok, result.summary()
        assert result.client.requests > 20
    return started


def test_normal_traffic_raises_no_drift_alert(loop: stack.Loop, tmp_path: Path) -> None:
    started = send_traffic(loop, "normal", tmp_path)
    code, report, log = stack.run_drift_monitor(loop, window_seconds=time.time() - started + 2)
    assert code == 0, log[-3000:]
    assert report["pods_scraped"] == 2 and report["pods_failed"] == 0
    (version,) = report["versions"]
    assert version["enough_data"] is True
    assert version["drift_detected"] is False, [f for f in version["features"] if f["drifted"]]
    # Prometheus has scraped the push and evaluated the rules several times by now.
    stack.wait_for(
        lambda: httpx.get(f"{loop.prometheus.url}/api/v1/query", params={"query": "drift_detected"}).json()[
            "data"
        ]["result"],
        30,
        what="drift_detected scraped from the Pushgateway",
    )
    time.sleep(3 * POLL_INTERVAL)
    assert stack.prometheus_alerts(loop.prometheus.url, "DataDriftDetected") == []


def test_summer_traffic_fires_data_drift_alert(loop: stack.Loop, tmp_path: Path) -> None:
    started = send_traffic(loop, "drift", tmp_path)
    code, report, log = stack.run_drift_monitor(loop, window_seconds=time.time() - started + 2)
    assert code == 0, log[-3000:]
    (version,) = report["versions"]
    assert version["drift_detected"] is True
    drifted = {f["feature"] for f in version["features"] if f["drifted"]}
    assert "arrival_month" in drifted and "historical_adr" in drifted
    assert version["prediction"]["drifted"] is True  # summer prices are far above the reference's

    fired, routed = stack.wait_for_alert(loop, "DataDriftDetected", timeout=180)
    assert fired["labels"]["severity"] in {"warning", "critical"}
    assert fired["labels"]["model_name"] == "hotel-adr"
    assert routed["labels"]["alertname"] == "DataDriftDetected"
    assert routed["status"]["state"] == "active"


def test_make_load_reports_both_views_and_fails_on_errors(loop: stack.Loop, tmp_path: Path) -> None:
    """`make load` is `python -m tests.load.run`: a clean run exits 0, any failed request exits 1."""
    argv = [
        "--host",
        loop.predictors[0].url,
        "--users",
        "2",
        "--spawn-rate",
        "2",
        "--duration",
        "3s",
        "--report-dir",
        str(tmp_path),
    ]
    clean = subprocess.run(
        [sys.executable, "-m", "tests.load.run", *argv],
        capture_output=True,
        text=True,
        cwd=stack.REPO,
        timeout=120,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"requests, 0 failed", clean.stdout) and "predictor:" in clean.stdout
    assert (tmp_path / "predictor" / "locust-normal.html").is_file()
    broken = subprocess.run(
        [sys.executable, "-m", "tests.load.run", *argv, "--model-name", "no-such-model"],
        capture_output=True,
        text=True,
        cwd=stack.REPO,
        timeout=120,
    )
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert re.search(r"requests, [1-9][0-9]* failed", broken.stdout), broken.stdout


def served_version(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/v1/models/hotel-adr", timeout=5).json().get("version")
    except httpx.HTTPError:
        return None


def test_retrain_moves_alias_under_load_with_zero_failures(
    loop: stack.Loop, champion: TrainedModel, tmp_path: Path
) -> None:
    client = MlflowClient(champion.tracking_uri)
    before = {p.name: scrape(p.url) for p in loop.predictors}
    endless = Load(users=3, spawn_rate=3, duration="10m", mode="normal")  # stopped by SIGTERM below
    runs = {p.name: start_locust(p.url, endless, tmp_path / p.name) for p in loop.predictors}
    try:
        time.sleep(3)
        env = {"MLFLOW_TRACKING_URI": champion.tracking_uri, "LOG_FORMAT": "json"}
        result = stack.run_cli(
            ["trainer", "train", "--candidates", "hist_gradient_boosting", "--seed", "7"], env=env
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outcome = json.loads(result.stdout)
        new_version = outcome["version"]
        if not outcome[
            "promoted"
        ]:  # same data, same candidate: a tie is possible; promote as an operator would
            assert stack.run_cli(["trainer", "promote", "--version", new_version], env=env).returncode == 0
        moved_at = time.monotonic()
        assert client.get_model_version_by_alias("hotel-adr", "champion").version == new_version

        stack.wait_for(
            lambda: all(served_version(p.url) == new_version for p in loop.predictors),
            POLL_INTERVAL + 30,  # one poll, plus loading the new version off the request path
            interval=0.2,
            what=f"every replica serving v{new_version}",
        )
        swap_seconds = time.monotonic() - moved_at
        time.sleep(2)  # keep the load on across the swap's aftermath
    finally:
        for proc in runs.values():
            proc.send_signal(signal.SIGTERM)
        client.set_registered_model_alias(
            "hotel-adr", "champion", champion.version
        )  # leave the session as found

    for p in loop.predictors:
        load = finish(runs[p.name], p.url, endless, tmp_path / p.name, before[p.name])
        assert load.client.requests > 50, load.summary()
        assert load.client.failures == 0, load.summary()
        assert load.server.errors == 0, load.summary()
    print(f"alias moved to v{new_version}; all replicas served it after {swap_seconds:.1f}s")
