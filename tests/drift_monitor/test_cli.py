"""The `drift-monitor` console script, run as a real process: exit codes, one-line errors, the report."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from mlflow import MlflowClient

from scripts import local_stack as stack
from tests.drift_monitor.conftest import (
    HTTP_PORT,
    NAMESPACE,
    PREDICTOR_SERVICE,
    RegisteredReference,
    contract_samples,
    endpoint,
    endpoint_slice,
    endpoint_slice_list,
)

MONITORING_EXPERIMENT = "drift-monitor-tests-monitoring"
# The CLI as the CronJob runs it, except that its "in-cluster" Kubernetes API is the fake API server
# given as the first argument (plain HTTP, no service-account token).
IN_FAKE_CLUSTER = """
import sys
from kubernetes import client, config
from drift_monitor.__main__ import main

def load_fake_incluster_config():
    client.Configuration.set_default(client.Configuration(host=sys.argv[1]))

config.load_incluster_config = load_fake_incluster_config
sys.exit(main(sys.argv[2:]))
"""


def run_monitor(args: list[str], **env: str):
    base = {"LOG_FORMAT": "json", "DRIFT_MONITOR_MLFLOW_WAIT_SECONDS": "1"}
    return stack.run_cli(["drift-monitor", *args], env={**base, **env}, timeout=120)


def run_monitor_in_cluster(api_url: str, args: list[str], **env: str):
    base = {"LOG_FORMAT": "json", "DRIFT_MONITOR_MLFLOW_WAIT_SECONDS": "1"}
    argv = ["python", "-c", IN_FAKE_CLUSTER, api_url, *args]
    return stack.run_cli(argv, env={**base, **env}, timeout=120)


def log_lines(stderr: str, *levels: str) -> list[str]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r["message"] for r in records if r["level"] in levels]


def error_lines(stderr: str) -> list[str]:
    return log_lines(stderr, "ERROR")


@pytest.fixture
def gateway(pushgateway: stack.Process) -> stack.Process:
    httpx.delete(f"{pushgateway.url}/metrics/job/drift-monitor", timeout=5).raise_for_status()
    return pushgateway


def pushed_value(gateway: stack.Process, name: str) -> float | None:
    for line in httpx.get(gateway.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_completed_run_with_drift_exits_0_reports_pushes_and_records(
    registered_reference: RegisteredReference, fake_predictor, gateway: stack.Process
) -> None:
    now = time.time()
    version = registered_reference.version
    pods = [
        fake_predictor(samples=contract_samples("drift", 300, seed=1, version=version, timestamp=now - 30)),
        fake_predictor(samples=contract_samples("drift", 300, seed=2, version=version, timestamp=now - 20)),
    ]
    unreachable = f"http://127.0.0.1:{stack.free_port()}"

    result = run_monitor(
        ["--targets", *(p.url for p in pods), unreachable, "--pushgateway", gateway.url],
        MLFLOW_TRACKING_URI=registered_reference.tracking_uri,
        DRIFT_MONITOR_MODEL_NAME=registered_reference.model_name,
        DRIFT_MONITOR_MONITORING_EXPERIMENT=MONITORING_EXPERIMENT,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["pods_scraped"], report["pods_failed"], report["skipped"]) == (2, 1, False)
    [v] = report["versions"]
    assert v["model_version"] == version and v["samples"] == 600
    assert v["drift_detected"] is True and "arrival_month" in v["drifted_features"]
    arrival_month = next(f for f in v["features"] if f["feature"] == "arrival_month")
    assert arrival_month["test"] == "ks" and arrival_month["drifted"] is True
    assert pushed_value(gateway, "drift_detected") == 1
    assert pushed_value(gateway, "drift_pods_failed") == 1
    assert pushed_value(gateway, "drift_last_run_success") == 1
    assert pushed_value(gateway, "drift_last_run_skipped") == 0

    client = MlflowClient(registered_reference.tracking_uri)
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.model_version = '{version}'")
    assert run.data.tags["drift_detected"] == "true"
    assert run.data.metrics["p_value.arrival_month"] < 1e-6
    assert "effect_size.arrival_month" in run.data.metrics


def test_no_ready_predictor_pod_skips_the_run_with_exit_0(fake_kube_api, gateway: stack.Process) -> None:
    loading = endpoint_slice("x", [endpoint("10.0.0.9", ready=False, pod="x")], HTTP_PORT)
    api = fake_kube_api({None: endpoint_slice_list([loading])})

    result = run_monitor_in_cluster(
        api.url,
        ["--pushgateway", gateway.url],
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{stack.free_port()}",  # not needed: nothing to compare
        DRIFT_MONITOR_NAMESPACE=NAMESPACE,
        DRIFT_MONITOR_PREDICTOR_SERVICE=PREDICTOR_SERVICE,
        DRIFT_MONITOR_MONITORING_EXPERIMENT=MONITORING_EXPERIMENT,  # nothing to record either
    )

    assert result.returncode == 0, result.stderr[-3000:]
    reason = f"no ready predictor pods behind Service {PREDICTOR_SERVICE} in namespace {NAMESPACE}: nothing to check yet"
    assert [line for line in log_lines(result.stderr, "INFO") if "skipped" in line] == [
        f"drift-monitor run skipped: {reason}"
    ]
    assert log_lines(result.stderr, "WARNING", "ERROR") == []
    report = json.loads(result.stdout)
    assert (report["skipped"], report["skip_reason"]) == (True, reason)
    assert (report["pods_scraped"], report["versions"]) == (0, [])
    assert pushed_value(gateway, "drift_last_run_skipped") == 1
    assert pushed_value(gateway, "drift_last_run_success") == 1
    assert pushed_value(gateway, "drift_last_success_timestamp_seconds") == pytest.approx(
        report["finished_at"], abs=1e-3
    )
    assert pushed_value(gateway, "drift_detected") is None


def test_mlflow_unreachable_is_one_clear_line_and_exit_1(fake_predictor) -> None:
    pod = fake_predictor()
    mlflow = f"http://127.0.0.1:{stack.free_port()}"

    result = run_monitor(["--targets", pod.url], MLFLOW_TRACKING_URI=mlflow)

    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"drift-monitor run failed: MLflow server {mlflow} is unreachable after 1s "
        "([Errno 111] Connection refused); check MLFLOW_TRACKING_URI"
    ]
    assert result.stdout == ""


def test_missing_reference_artifacts_fail_the_run_and_push_the_failure(
    registered_reference: RegisteredReference, fake_predictor, gateway: stack.Process
) -> None:
    version = registered_reference.version_without_reference
    pod = fake_predictor(
        samples=contract_samples("normal", 250, seed=3, version=version, timestamp=time.time())
    )

    result = run_monitor(
        ["--targets", pod.url, "--pushgateway", gateway.url],
        MLFLOW_TRACKING_URI=registered_reference.tracking_uri,
        DRIFT_MONITOR_MODEL_NAME=registered_reference.model_name,
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(
        f"drift-monitor run failed: no reference artifacts for {registered_reference.model_name} v{version}"
    )
    assert "reference/reference.parquet" in line
    assert pushed_value(gateway, "drift_last_run_success") == 0
    assert pushed_value(gateway, "drift_last_success_timestamp_seconds") is None


def test_no_pod_answering_is_one_clear_line_and_exit_1(registered_reference: RegisteredReference) -> None:
    dead = [f"http://127.0.0.1:{stack.free_port()}" for _ in range(2)]

    result = run_monitor(["--targets", *dead], MLFLOW_TRACKING_URI=registered_reference.tracking_uri)

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(
        "drift-monitor run failed: none of the 2 predictor pod(s) answered, e.g. http://127.0.0.1:"
    )


def test_no_targets_outside_kubernetes_says_what_to_pass(registered_reference: RegisteredReference) -> None:
    result = run_monitor(
        [], MLFLOW_TRACKING_URI=registered_reference.tracking_uri, KUBERNETES_SERVICE_HOST=""
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "not running in a Kubernetes pod" in line and "--targets" in line


def test_invalid_settings_exit_2_naming_the_variable() -> None:
    """As the CronJob runs it (the console script); tests/test_cli_shape.py checks all three CLIs in-process."""
    result = run_monitor(
        ["--targets", "http://x"], MLFLOW_TRACKING_URI="http://x", DRIFT_MONITOR_CORRECTION="holm"
    )

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("drift-monitor: invalid settings: DRIFT_MONITOR_CORRECTION:")
    assert result.stdout == ""
