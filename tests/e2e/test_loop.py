"""The rest of the demo path as tests, on the session's loop (tests/conftest.py): real MLflow, two
predictor processes, Pushgateway, Prometheus with our rules, Alertmanager, all on 127.0.0.1.

1. `make load` (locust, headless) reports the client's and the predictor's view and fails on errors;
2. under continuous locust load a retrain moves the alias → every replica serves the new version
   within the poll interval and locust counts zero failures.

Normal traffic → no alert and summer traffic → DataDriftDetected run once, in
tests/drift_monitor/test_integration.py, on the same loop.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from scripts import local_stack as stack
from scripts.load.run import Load, finish, scrape, server_view, start_locust
from tests.conftest import LOOP_POLL_SECONDS, TrainedModel

pytestmark = pytest.mark.e2e


def test_make_load_reports_both_views_and_fails_on_errors(loop: stack.Loop, tmp_path: Path) -> None:
    """`make load` is `python -m scripts.load.run`: a clean run exits 0, any failed request exits 1."""
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
        [sys.executable, "-m", "scripts.load.run", *argv],
        capture_output=True,
        text=True,
        cwd=stack.REPO,
        timeout=120,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"requests, 0 failed", clean.stdout) and "predictor:" in clean.stdout
    assert (tmp_path / "predictor" / "locust-normal.html").is_file()
    broken = subprocess.run(
        [sys.executable, "-m", "scripts.load.run", *argv, "--model-name", "no-such-model"],
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
        stack.wait_for(
            lambda: all(server_view(before[p.name], scrape(p.url)).requests >= 20 for p in loop.predictors),
            60,
            what="locust's requests on every replica",
        )
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
            LOOP_POLL_SECONDS + 30,  # one poll, plus loading the new version off the request path
            interval=0.2,
            what=f"every replica serving v{new_version}",
        )
        swap_seconds = time.monotonic() - moved_at
        swapped = {p.name: scrape(p.url) for p in loop.predictors}
        stack.wait_for(  # keep the load on across the swap's aftermath
            lambda: all(server_view(swapped[p.name], scrape(p.url)).requests >= 20 for p in loop.predictors),
            60,
            what=f"locust's requests on v{new_version}",
        )
    finally:
        for proc in runs.values():
            proc.send_signal(signal.SIGTERM)
        # Leave the session as found: the champion back, and served by every replica.
        client.set_registered_model_alias("hotel-adr", "champion", champion.version)
        stack.wait_for(
            lambda: all(served_version(p.url) == champion.version for p in loop.predictors),
            LOOP_POLL_SECONDS + 30,
            interval=0.2,
            what=f"every replica back on v{champion.version}",
        )

    for p in loop.predictors:
        load = finish(runs[p.name], p.url, endless, tmp_path / p.name, before[p.name])
        assert load.client.requests > 50, load.summary()
        assert load.client.failures == 0, load.summary()
        assert load.server.errors == 0, load.summary()
    print(f"alias moved to v{new_version}; all replicas served it after {swap_seconds:.1f}s")
