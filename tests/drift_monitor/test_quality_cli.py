"""`drift-monitor` with a ledger, run as the CronJob runs it: the quality check runs after the drift part
(also when that skips), its failure is exit 1 with one ERROR line while the drift results are still
pushed, a database that comes back is read again, and bad quality settings exit 2 naming the variable."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from mlflow import MlflowClient

from drift_monitor.__main__ import main
from drift_monitor.push import JOB, QUALITY_JOB
from scripts import local_stack as stack
from tests.drift_monitor.conftest import (
    HTTP_PORT,
    NAMESPACE,
    PREDICTOR_SERVICE,
    REFERENCE_MAE,
    LedgerRows,
    QualityModel,
    RegisteredReference,
    contract_samples,
    endpoint,
    endpoint_slice,
    endpoint_slice_list,
    prediction,
)
from tests.drift_monitor.test_cli import error_lines, log_lines, run_monitor, run_monitor_in_cluster
from tests.drift_monitor.test_quality_push import pushed

MONITORING_EXPERIMENT = "quality-tests-monitoring"
HOUR = 3600.0


@pytest.fixture
def gateway(pushgateway: stack.Process) -> stack.Process:
    for job in (JOB, QUALITY_JOB):
        httpx.delete(f"{pushgateway.url}/metrics/job/{job}", timeout=5).raise_for_status()
    return pushgateway


def fill(rows: LedgerRows, model_name: str, version: str, now: float) -> None:
    """Three labelled predictions off by +10, -30 and +20 (MAE 20 = the reference, bias 0), one unlabelled."""
    rows.predict(
        *(
            prediction(
                f"r{i}:0", version=version, at=now - (i + 2) * HOUR, value=100.0, model_name=model_name
            )
            for i in range(4)
        )
    )
    for i, actual in enumerate((90.0, 130.0, 80.0)):
        rows.label(f"r{i}:0", actual, received_at=now - 60 * (i + 1))


def test_a_drift_run_that_skips_still_checks_quality(
    fake_kube_api, gateway: stack.Process, quality_model: QualityModel, tmp_path
) -> None:
    now = time.time()
    rows = LedgerRows(f"sqlite:///{tmp_path / 'ledger.db'}")
    fill(rows, quality_model.name, quality_model.version, now)
    rows.close()
    loading = endpoint_slice("x", [endpoint("10.0.0.9", ready=False, pod="x")], HTTP_PORT)
    api = fake_kube_api({None: endpoint_slice_list([loading])})

    result = run_monitor_in_cluster(
        api.url,
        ["--pushgateway", gateway.url],
        MLFLOW_TRACKING_URI=quality_model.tracking_uri,
        DRIFT_MONITOR_NAMESPACE=NAMESPACE,
        DRIFT_MONITOR_PREDICTOR_SERVICE=PREDICTOR_SERVICE,
        DRIFT_MONITOR_MODEL_NAME=quality_model.name,
        DRIFT_MONITOR_LEDGER_DATABASE_URL=rows.url,
        DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS="3",
        DRIFT_MONITOR_MONITORING_EXPERIMENT=MONITORING_EXPERIMENT,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert log_lines(result.stderr, "WARNING", "ERROR") == []
    report = json.loads(result.stdout)
    assert report["skipped"] is True
    quality = report["quality"]
    assert (quality["last_label_source"], quality["min_labelled_rows"]) == ("label", 3)
    assert quality["last_label_at"] == pytest.approx(now - 60, abs=1e-3)
    [v] = quality["versions"]
    assert (v["model_version"], v["ledger_rows"], v["labelled_rows"]) == (quality_model.version, 4, 3)
    assert (v["mae"], v["bias"], v["reference_mae"], v["mae_ratio"]) == (20.0, 0.0, REFERENCE_MAE, 1.0)
    assert (v["enough_labels"], v["degraded"]) == (True, False)

    series = pushed(gateway, QUALITY_JOB)
    labels = (("model_name", quality_model.name), ("model_version", quality_model.version))
    assert series[("model_quality_mae", labels)] == 20.0
    assert series[("model_quality_reference_mae", labels)] == REFERENCE_MAE
    assert series[("model_quality_last_run_success", ())] == 1
    assert pushed(gateway, JOB)[("drift_last_run_skipped", ())] == 1

    client = MlflowClient(quality_model.tracking_uri)
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id], filter_string="tags.check = 'quality'")
    assert run.info.run_name.startswith(f"quality-v{quality_model.version}-")
    assert run.data.tags["reference_run_id"] == quality_model.reference_run_id
    assert run.data.metrics["mae"] == 20.0 and run.data.metrics["labelled_rows"] == 3
    assert run.data.params["window_seconds"] == "604800"


def test_a_database_down_fails_the_quality_check_only_and_is_read_again_once_back(
    registered_reference: RegisteredReference,
    fake_predictor,
    gateway: stack.Process,
    postgres_server: stack.PostgresServer,
) -> None:
    now = time.time()
    url = postgres_server.create_database()
    rows = LedgerRows(url)
    fill(rows, registered_reference.model_name, registered_reference.version, now)
    rows.close()
    version = registered_reference.version
    pod = fake_predictor(samples=contract_samples("drift", 300, seed=5, version=version, timestamp=now - 10))
    args = ["--targets", pod.url, "--pushgateway", gateway.url]
    env = {
        "MLFLOW_TRACKING_URI": registered_reference.tracking_uri,
        "DRIFT_MONITOR_MODEL_NAME": registered_reference.model_name,
        "DRIFT_MONITOR_LEDGER_DATABASE_URL": url,
    }

    postgres_server.stop()
    try:
        down = run_monitor(args, **env)
    finally:
        postgres_server.start()

    assert down.returncode == 1
    [line] = error_lines(down.stderr)
    assert line.startswith(
        f"model quality check failed: cannot read the ledger database "
        f"postgresql+psycopg://mlops:***@127.0.0.1:{postgres_server.port}/"
    ), line
    assert postgres_server.password not in down.stderr + down.stdout
    report = json.loads(down.stdout)  # the drift part completed: its report, without quality
    assert report["quality"] is None and report["versions"][0]["drift_detected"] is True
    drift = pushed(gateway, JOB)
    labels = (("model_name", registered_reference.model_name), ("model_version", version))
    assert drift[("drift_detected", labels)] == 1 and drift[("drift_last_run_success", ())] == 1
    assert pushed(gateway, QUALITY_JOB) == {("model_quality_last_run_success", ()): 0}

    back = run_monitor(args, **env)

    assert back.returncode == 0, back.stderr[-3000:]
    quality = json.loads(back.stdout)["quality"]
    [v] = quality["versions"]
    assert (v["labelled_rows"], v["mae"]) == (3, 20.0)
    assert v["reference_mae"] is None and "has no reference_mae metric" in v["reference_missing"]
    assert [line for line in log_lines(back.stderr, "WARNING") if "reference MAE" in line] == [
        "no reference MAE: ModelQualityDegraded cannot judge this version"
    ]
    series = pushed(gateway, QUALITY_JOB)
    assert series[("model_quality_last_run_success", ())] == 1
    assert series[("model_quality_mae", labels)] == 20.0
    assert ("model_quality_reference_mae", labels) not in series  # no yardstick: absent, not 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRIFT_MONITOR_LEDGER_DATABASE_URL", "mysql://monitor:hunter2@db/ledger"),
        ("DRIFT_MONITOR_LABEL_DELAY_SECONDS", "-1"),
        ("DRIFT_MONITOR_QUALITY_WINDOW_SECONDS", "a week"),
        ("DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS", "0"),
        ("DRIFT_MONITOR_QUALITY_MAX_MAE_RATIO", "0"),
        ("DRIFT_MONITOR_LABELS_MISSING_AFTER_SECONDS", "0"),
    ],
)
def test_invalid_quality_settings_exit_2_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv(variable, value)

    assert main(["--targets", "http://127.0.0.1:1"]) == 2

    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith(f"drift-monitor: invalid settings: {variable}:"), line
    assert "hunter2" not in line and out == ""
