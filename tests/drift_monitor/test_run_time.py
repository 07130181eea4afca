"""How long one monitor run takes for two pods' full sample buffers (services/drift-monitor/README.md, "Run time").

`pytest tests/drift_monitor/test_run_time.py -s` shows two numbers:
- the run itself, in a warm process: scrape 10k samples over HTTP, download the reference from
  MLflow, KS / chi-squared per feature, PSI, prediction KS;
- the whole `drift-monitor` process, as a CronJob pays it: plus interpreter start and imports
  (alibi-detect's detectors and MLflow).
"""

from __future__ import annotations

import json
import time

import pytest

from drift_monitor.config import Settings
from drift_monitor.monitor import run
from tests.drift_monitor.conftest import RegisteredReference, contract_samples
from tests.drift_monitor.test_cli import run_monitor

SAMPLES_PER_POD = 5000


def test_run_time_per_10k_samples(
    registered_reference: RegisteredReference, fake_predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the CLI sets it
    now = time.time()
    version = registered_reference.version
    pods = [
        fake_predictor(
            samples=contract_samples("normal", SAMPLES_PER_POD, seed=s, version=version, timestamp=now - 60)
        )
        for s in (11, 12)
    ]
    settings = Settings(
        mlflow_tracking_uri=registered_reference.tracking_uri,
        model_name=registered_reference.model_name,
        targets=[p.url for p in pods],
    )
    run(settings)  # warm up: imports alibi-detect into this process

    started = time.perf_counter()
    report = run(settings)
    warm = time.perf_counter() - started

    started = time.perf_counter()
    result = run_monitor(
        ["--targets", *(p.url for p in pods)],
        MLFLOW_TRACKING_URI=registered_reference.tracking_uri,
        DRIFT_MONITOR_MODEL_NAME=registered_reference.model_name,
    )
    cold = time.perf_counter() - started

    assert report.versions[0].samples == 2 * SAMPLES_PER_POD
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["versions"][0]["samples"] == 2 * SAMPLES_PER_POD
    print(f"\ndrift-monitor, 10k samples from 2 pods: run {warm:.2f} s warm, {cold:.1f} s as a new process")
    assert warm < 30
