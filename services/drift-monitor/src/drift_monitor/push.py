"""Hand the run's metrics to the Prometheus Pushgateway, grouped under `job="drift-monitor"`.

A completed run PUTs its registry: the Pushgateway then replaces *every* metric of the group, so
the verdicts of a model version that is no longer served disappear instead of lingering.
A failed run POSTs (push-add) only the run-status metrics: POST replaces just the metric names it
carries, so `drift_last_success_timestamp_seconds` and the last verdicts of the previous good run
survive, and `DriftMonitorStale` measures the time since that run.
A skipped run (no ready predictor pod) POSTs too, its status without any verdict series: a PUT would
delete the last verdicts, and Alertmanager would announce a firing DataDriftDetected as resolved
although nothing was checked. They stay until a run that checks pods replaces them.

The quality check (with a ledger) has its own group, `job="model-quality"`, with the same pattern: a
completed check PUTs, a failed one POSTs `model_quality_last_run_success` 0 and keeps the last numbers.
Separate groups, so each check's PUT never deletes the other's series.
"""

from __future__ import annotations

import logging

from prometheus_client import push_to_gateway, pushadd_to_gateway

from drift_monitor.errors import PushFailed
from drift_monitor.metrics import (
    failure_registry,
    quality_failure_registry,
    quality_registry,
    report_registry,
    skip_registry,
)
from drift_monitor.report import QualityReport, RunReport

log = logging.getLogger(__name__)

JOB = "drift-monitor"
QUALITY_JOB = "model-quality"
TIMEOUT_SECONDS = 10


def push_report(gateway: str, report: RunReport) -> None:
    """Replace the whole `drift-monitor` group with this run's results; a skipped run only adds its status."""
    push = pushadd_to_gateway if report.skipped else push_to_gateway
    registry = skip_registry(report) if report.skipped else report_registry(report)
    try:
        push(gateway, job=JOB, registry=registry, timeout=TIMEOUT_SECONDS)
    except OSError as exc:  # urllib errors and non-2xx answers
        raise PushFailed(f"could not push the results to the Pushgateway at {gateway} ({exc})") from exc
    log.info("pushed results", extra={"pushgateway": gateway, "job": JOB, "skipped": report.skipped})


def push_failure(gateway: str, *, started_at: float, finished_at: float) -> None:
    """Record a failed run without touching the previous run's results; never raises (the run already failed)."""
    registry = failure_registry(started_at=started_at, finished_at=finished_at)
    try:
        pushadd_to_gateway(gateway, job=JOB, registry=registry, timeout=TIMEOUT_SECONDS)
    except OSError as exc:  # urllib errors and non-2xx answers
        log.warning(
            "could not push the failed run's status", extra={"pushgateway": gateway, "error": str(exc)}
        )


def push_quality(gateway: str, report: QualityReport) -> None:
    """Replace the whole `model-quality` group: a version that left the window disappears."""
    try:
        push_to_gateway(gateway, job=QUALITY_JOB, registry=quality_registry(report), timeout=TIMEOUT_SECONDS)
    except OSError as exc:  # urllib errors and non-2xx answers
        raise PushFailed(
            f"could not push the quality results to the Pushgateway at {gateway} ({exc})"
        ) from exc
    log.info("pushed quality results", extra={"pushgateway": gateway, "job": QUALITY_JOB})


def push_quality_failure(gateway: str) -> None:
    """Record a failed quality check, keeping the last check's numbers; never raises."""
    try:
        pushadd_to_gateway(
            gateway, job=QUALITY_JOB, registry=quality_failure_registry(), timeout=TIMEOUT_SECONDS
        )
    except OSError as exc:
        log.warning(
            "could not push the failed quality check's status",
            extra={"pushgateway": gateway, "error": str(exc)},
        )
