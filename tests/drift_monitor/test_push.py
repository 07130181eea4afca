"""Pushing to a real Pushgateway: each completed run replaces the last; a failed run keeps the last success;
a skipped run (no ready predictor pod) is a success that keeps the last verdicts."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drift_monitor.errors import PushFailed
from drift_monitor.push import JOB, push_failure, push_report
from drift_monitor.report import FeatureDrift, PredictionDrift, RunReport, VersionReport
from scripts import local_stack as stack


def version_report(version: str, *, drifted: bool) -> VersionReport:
    p = 1e-12 if drifted else 0.4
    return VersionReport(
        model_name="hotel-adr",
        model_version=version,
        reference_run_id="abc",
        samples=1000,
        enough_data=True,
        drift_detected=drifted,
        drifted_ratio=0.5 if drifted else 0.0,
        threshold=0.025,
        features=[
            FeatureDrift("arrival_month", "ks", 0.6, p, 6.7 if drifted else 0.01, drifted),
            FeatureDrift("meal", "chi2", 3.0, 0.3, 0.02, False),
        ],
        prediction=PredictionDrift(0.5, p, 4.1 if drifted else 0.01, drifted),
    )


def run_report(*versions: VersionReport, finished_at: float = 1_700_000_100.0) -> RunReport:
    return RunReport(
        started_at=finished_at - 2.5,
        finished_at=finished_at,
        window_seconds=3600,
        p_value=0.05,
        correction="bonferroni",
        min_samples=200,
        pods_scraped=2,
        pods_failed=0,
        pod_errors={},
        versions=list(versions),
    )


def skipped_report(*, finished_at: float) -> RunReport:
    return replace(
        run_report(finished_at=finished_at),
        pods_scraped=0,
        skip_reason="no ready predictor pods behind Service mlops-predictor in namespace mlops: nothing to check yet",
    )


def pushed(gateway: stack.Process) -> dict[tuple[str, tuple], float]:
    """The drift_* samples the Pushgateway serves, keyed by (name, sorted labels without job/instance)."""
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("drift_") and s.labels.get("job") == JOB:
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("job", "instance")))
                samples[(s.name, labels)] = s.value
    return samples


@pytest.fixture
def gateway(pushgateway: stack.Process) -> stack.Process:
    httpx.delete(f"{pushgateway.url}/metrics/job/{JOB}", timeout=5).raise_for_status()
    return pushgateway


def test_a_completed_run_pushes_verdicts_and_run_status(gateway: stack.Process) -> None:
    push_report(gateway.url, run_report(version_report("3", drifted=True)))

    metrics = pushed(gateway)
    v3 = (("model_name", "hotel-adr"), ("model_version", "3"))
    assert metrics[("drift_detected", v3)] == 1
    assert metrics[("drift_features_drifted_ratio", v3)] == 0.5
    assert metrics[("drift_prediction_detected", v3)] == 1
    assert metrics[("drift_feature_p_value", (("feature", "arrival_month"), *v3))] == 1e-12
    assert metrics[("drift_feature_effect_size", (("feature", "arrival_month"), *v3))] == 6.7
    assert metrics[("drift_feature_drifted", (("feature", "meal"), *v3))] == 0
    assert metrics[("drift_samples_evaluated", v3)] == 1000
    assert metrics[("drift_pods_scraped", ())] == 2
    assert metrics[("drift_last_run_success", ())] == 1
    assert metrics[("drift_last_run_skipped", ())] == 0
    assert metrics[("drift_last_success_timestamp_seconds", ())] == 1_700_000_100.0
    assert metrics[("drift_run_duration_seconds", ())] == 2.5


def test_the_next_run_replaces_the_previous_one(gateway: stack.Process) -> None:
    push_report(gateway.url, run_report(version_report("3", drifted=True), finished_at=1_700_000_100.0))
    push_report(gateway.url, run_report(version_report("4", drifted=False), finished_at=1_700_000_700.0))

    metrics = pushed(gateway)
    assert not [key for key in metrics if ("model_version", "3") in key[1]], "version 3 is no longer served"
    assert metrics[("drift_detected", (("model_name", "hotel-adr"), ("model_version", "4")))] == 0
    assert metrics[("drift_last_success_timestamp_seconds", ())] == 1_700_000_700.0


def test_not_enough_data_pushes_no_verdict(gateway: stack.Process) -> None:
    thin = VersionReport(
        model_name="hotel-adr", model_version="5", reference_run_id="abc", samples=12, enough_data=False
    )
    push_report(gateway.url, run_report(thin))

    names = {name for name, _ in pushed(gateway)}
    assert "drift_detected" not in names and "drift_feature_p_value" not in names
    assert {"drift_samples_evaluated", "drift_enough_data", "drift_last_run_success"} <= names


def test_a_failed_run_keeps_the_last_success_and_its_verdicts(gateway: stack.Process) -> None:
    push_report(gateway.url, run_report(version_report("3", drifted=True), finished_at=1_700_000_100.0))

    push_failure(gateway.url, started_at=1_700_000_690.0, finished_at=1_700_000_700.0)

    metrics = pushed(gateway)
    assert metrics[("drift_last_run_success", ())] == 0
    assert metrics[("drift_last_run_timestamp_seconds", ())] == 1_700_000_700.0
    assert metrics[("drift_run_duration_seconds", ())] == 10.0
    assert metrics[("drift_last_success_timestamp_seconds", ())] == 1_700_000_100.0
    assert metrics[("drift_detected", (("model_name", "hotel-adr"), ("model_version", "3")))] == 1


def test_a_skipped_run_succeeds_and_keeps_the_last_verdicts(gateway: stack.Process) -> None:
    push_report(gateway.url, run_report(version_report("3", drifted=True), finished_at=1_700_000_100.0))
    push_failure(gateway.url, started_at=1_700_000_690.0, finished_at=1_700_000_700.0)

    push_report(gateway.url, skipped_report(finished_at=1_700_001_300.0))

    metrics = pushed(gateway)
    assert metrics[("drift_last_run_skipped", ())] == 1
    assert metrics[("drift_last_run_success", ())] == 1  # DriftMonitorFailing resolves
    assert metrics[("drift_last_run_timestamp_seconds", ())] == 1_700_001_300.0
    assert metrics[("drift_last_success_timestamp_seconds", ())] == 1_700_001_300.0  # not stale
    assert metrics[("drift_run_duration_seconds", ())] == 2.5
    assert metrics[("drift_pods_scraped", ())] == 0
    # POST, not PUT: a firing DataDriftDetected is not announced as resolved by a run that checked nothing.
    v3 = (("model_name", "hotel-adr"), ("model_version", "3"))
    assert metrics[("drift_detected", v3)] == 1
    assert metrics[("drift_features_drifted_ratio", v3)] == 0.5
    assert metrics[("drift_feature_p_value", (("feature", "arrival_month"), *v3))] == 1e-12


@pytest.mark.parametrize("next_run", ["completed", "failed"])
def test_the_run_after_a_skip_clears_the_skip(gateway: stack.Process, next_run: str) -> None:
    push_report(gateway.url, skipped_report(finished_at=1_700_000_100.0))

    if next_run == "completed":
        push_report(gateway.url, run_report(version_report("3", drifted=False), finished_at=1_700_000_700.0))
    else:
        push_failure(gateway.url, started_at=1_700_000_690.0, finished_at=1_700_000_700.0)

    metrics = pushed(gateway)
    assert metrics[("drift_last_run_skipped", ())] == 0
    assert metrics[("drift_last_run_success", ())] == (1 if next_run == "completed" else 0)
    assert metrics[("drift_last_run_timestamp_seconds", ())] == 1_700_000_700.0


def test_an_unreachable_pushgateway_fails_the_push_clearly() -> None:
    url = f"http://127.0.0.1:{stack.free_port()}"

    with pytest.raises(PushFailed, match=f"could not push the results to the Pushgateway at {url}"):
        push_report(url, run_report(version_report("3", drifted=False)))
    with pytest.raises(PushFailed, match=f"could not push the results to the Pushgateway at {url}"):
        push_report(url, skipped_report(finished_at=1.0))
    push_failure(url, started_at=0.0, finished_at=1.0)  # logs, never raises: the run already failed
