"""How long one monitor run takes for 10,000 samples (2 pods x 5,000), printed for the README.

`pytest tests/drift_monitor/test_run_time.py -s` shows the numbers: the wall time of the whole
`drift-monitor` process (imports included, as a CronJob pays them) and the run itself as the report
measures it (discovery to verdict: scrape, reference download, tests, PSI).
"""

from __future__ import annotations

import json
import time

from tests.drift_monitor.conftest import RegisteredReference, contract_samples
from tests.drift_monitor.test_cli import run_monitor

SAMPLES_PER_POD = 5000


def test_run_time_per_10k_samples(registered_reference: RegisteredReference, fake_predictor) -> None:
    now = time.time()
    version = registered_reference.version
    pods = [
        fake_predictor(
            samples=contract_samples("normal", SAMPLES_PER_POD, seed=s, version=version, timestamp=now - 60)
        )
        for s in (11, 12)
    ]

    started = time.perf_counter()
    result = run_monitor(
        ["--targets", *(p.url for p in pods)],
        MLFLOW_TRACKING_URI=registered_reference.tracking_uri,
        DRIFT_MONITOR_MODEL_NAME=registered_reference.model_name,
    )
    wall = time.perf_counter() - started

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["versions"][0]["samples"] == 2 * SAMPLES_PER_POD
    print(
        f"\ndrift-monitor, 10k samples from 2 pods: process wall time {wall:.1f} s, "
        f"run (scrape + reference + tests) {report['duration_seconds']:.2f} s"
    )
    assert report["duration_seconds"] < 30
