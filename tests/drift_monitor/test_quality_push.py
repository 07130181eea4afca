"""The quality check's series on a real Pushgateway, in their own group (job="model-quality"): a completed
check replaces the group, a failed one keeps the last numbers, and neither touches the drift group."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drift_monitor.errors import PushFailed
from drift_monitor.push import JOB, QUALITY_JOB, push_quality, push_quality_failure, push_report
from drift_monitor.report import QualityReport, VersionQuality
from scripts import local_stack as stack
from tests.drift_monitor.test_push import run_report, version_report


def version_quality(version: str, *, mae: float | None, reference: float | None = 20.0) -> VersionQuality:
    labelled = 0 if mae is None else 150
    return VersionQuality(
        model_name="hotel-adr",
        model_version=version,
        ledger_rows=400,
        labelled_rows=labelled,
        mae=mae,
        rmse=None if mae is None else mae * 1.3,
        bias=None if mae is None else -mae / 2,
        reference_mae=reference,
        reference_run_id="run-1" if reference is not None else None,
        reference_missing=None if reference is not None else "no reference_mae",
        mae_ratio=None if mae is None or reference is None else mae / reference,
        enough_labels=labelled >= 100,
        degraded=None,
    )


def quality_report(
    *versions: VersionQuality,
    finished_at: float = 1_700_000_100.0,
    last_label: float | None = 1_699_990_000.0,
) -> QualityReport:
    return QualityReport(
        checked_at=finished_at - 1,
        finished_at=finished_at,
        window_start=finished_at - 604_801,
        window_end=finished_at - 1,
        window_seconds=604_800,
        label_delay_seconds=0,
        min_labelled_rows=100,
        max_mae_ratio=1.25,
        labels_missing_after_seconds=86_400,
        last_label_at=last_label,
        last_label_source="label" if last_label is not None else None,
        versions=list(versions),
    )


def pushed(gateway: stack.Process, job: str) -> dict[tuple[str, tuple], float]:
    """The samples of one Pushgateway group, keyed by (name, sorted labels without job/instance)."""
    samples = {}
    for family in text_string_to_metric_families(httpx.get(gateway.url + "/metrics", timeout=5).text):
        for s in family.samples:
            if s.labels.get("job") == job and not s.name.startswith(("push_", "go_", "process_")):
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("job", "instance")))
                samples[(s.name, labels)] = s.value
    return samples


V3 = (("model_name", "hotel-adr"), ("model_version", "3"))
V4 = (("model_name", "hotel-adr"), ("model_version", "4"))


@pytest.fixture
def gateway(pushgateway: stack.Process) -> stack.Process:
    for job in (JOB, QUALITY_JOB):
        httpx.delete(f"{pushgateway.url}/metrics/job/{job}", timeout=5).raise_for_status()
    return pushgateway


def test_a_completed_check_pushes_the_errors_the_yardstick_and_the_thresholds(gateway: stack.Process) -> None:
    push_quality(
        gateway.url,
        quality_report(version_quality("3", mae=30.0), version_quality("4", mae=None, reference=None)),
    )

    assert pushed(gateway, QUALITY_JOB) == {
        ("model_quality_labelled_rows", V3): 150,
        ("model_quality_ledger_rows", V3): 400,
        ("model_quality_mae", V3): 30.0,
        ("model_quality_rmse", V3): 39.0,
        ("model_quality_bias", V3): -15.0,
        ("model_quality_reference_mae", V3): 20.0,
        # Version 4: rows but no label yet, and no reference: counts only, no misleading zeros.
        ("model_quality_labelled_rows", V4): 0,
        ("model_quality_ledger_rows", V4): 400,
        ("model_quality_max_mae_ratio", ()): 1.25,
        ("model_quality_min_labelled_rows", ()): 100,
        ("model_quality_labels_missing_after_seconds", ()): 86_400,
        ("model_quality_last_label_timestamp_seconds", ()): 1_699_990_000.0,
        ("model_quality_last_success_timestamp_seconds", ()): 1_700_000_100.0,
        ("model_quality_last_run_success", ()): 1,
    }


def test_the_next_check_replaces_the_group_and_an_empty_ledger_has_no_last_label(
    gateway: stack.Process,
) -> None:
    push_quality(gateway.url, quality_report(version_quality("3", mae=30.0)))

    push_quality(gateway.url, quality_report(finished_at=1_700_000_700.0, last_label=None))

    metrics = pushed(gateway, QUALITY_JOB)
    assert not [key for key in metrics if key[1]]  # version 3 left the window: its series are gone
    assert ("model_quality_last_label_timestamp_seconds", ()) not in metrics
    assert metrics[("model_quality_last_success_timestamp_seconds", ())] == 1_700_000_700.0


def test_a_failed_check_keeps_the_last_numbers_and_the_drift_group(gateway: stack.Process) -> None:
    push_report(gateway.url, run_report(version_report("3", drifted=True)))
    push_quality(gateway.url, quality_report(version_quality("3", mae=30.0)))

    push_quality_failure(gateway.url)

    metrics = pushed(gateway, QUALITY_JOB)
    assert metrics[("model_quality_last_run_success", ())] == 0
    assert metrics[("model_quality_mae", V3)] == 30.0
    assert metrics[("model_quality_last_success_timestamp_seconds", ())] == 1_700_000_100.0
    drift = pushed(gateway, JOB)
    assert drift[("drift_detected", V3)] == 1 and drift[("drift_last_run_success", ())] == 1


def test_each_check_replaces_only_its_own_group(gateway: stack.Process) -> None:
    push_quality(gateway.url, quality_report(version_quality("3", mae=30.0)))
    push_report(gateway.url, run_report(version_report("4", drifted=False)))
    push_quality(gateway.url, quality_report(version_quality("3", mae=10.0)))

    assert pushed(gateway, JOB)[("drift_detected", V4)] == 0
    assert pushed(gateway, QUALITY_JOB)[("model_quality_mae", V3)] == 10.0


def test_an_unreachable_pushgateway_fails_the_quality_push_clearly() -> None:
    url = f"http://127.0.0.1:{stack.free_port()}"

    with pytest.raises(PushFailed, match=f"could not push the quality results to the Pushgateway at {url}"):
        push_quality(url, quality_report())
    push_quality_failure(url)  # logs, never raises: the check already failed
