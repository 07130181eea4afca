"""`drift-monitor`: one monitoring run per call (a Kubernetes CronJob, or by hand against local pods).

A run has two parts: the drift check (the pods' recent samples against the training reference) and,
when DRIFT_MONITOR_LEDGER_DATABASE_URL is set, the quality check (the ledger's predictions against their
delayed labels). Each pushes to its own Pushgateway group, and one failing does not stop the other.

Exit status 0 means the run completed, whether it found drift or not (drift and quality are reported
through the metrics and alerts, not the exit code), or that the drift part had nothing to check:
discovery found no ready predictor pod, as on a fresh install before the first model (one log line
says so, the report and `drift_last_run_skipped` record it). 1 means a part failed: the reason is one
ERROR line on stderr per failed part, and the Pushgateway (if any) learns that it failed. 2 means bad
usage or invalid settings: one line `drift-monitor: invalid settings: <VARIABLE>: <problem>` on
stderr. The JSON report goes to stdout whenever the drift part completed (its `quality` is null when
the quality check is off or failed).

    drift-monitor --targets http://127.0.0.1:8080 --pushgateway http://127.0.0.1:9091
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from drift_monitor.config import Settings, describe_settings_error
from drift_monitor.errors import DriftMonitorError
from drift_monitor.logging import configure_logging
from drift_monitor.report import QualityReport, RunReport

log = logging.getLogger("drift_monitor")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# The first words of the ERROR line of each part's failure.
DRIFT_FAILED, QUALITY_FAILED = "drift-monitor run failed", "model quality check failed"
T = TypeVar("T")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="drift-monitor",
        description="Test the predictors' recent samples for drift against the model's training reference, and with a ledger score the live predictions against their labels, once.",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        metavar="URL",
        help="predictor base URLs to scrape instead of discovering the pods through Kubernetes (DRIFT_MONITOR_TARGETS)",
    )
    parser.add_argument(
        "--pushgateway", metavar="URL", help="Pushgateway to push to (DRIFT_MONITOR_PUSHGATEWAY_URL)"
    )
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {"targets": args.targets, "pushgateway_url": args.pushgateway}
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def main(argv: list[str] | None = None) -> int:
    # The run starts now: the monitoring window ends here, and the pushed run duration includes
    # the seconds the imports below take (MLflow, pandas, kubernetes; alibi-detect later).
    started_at = time.time()
    args = parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as exc:  # before logging is set up: its level and format are settings too
        print(f"drift-monitor: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    # Keep MLflow's console extras out: download progress bars in the log, and "View run at" lines
    # on stdout, which carries only the JSON report.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    from drift_monitor.monitor import run
    from drift_monitor.quality import check_quality

    report = _attempt(DRIFT_FAILED, lambda: run(settings, started_at=started_at))
    if report is not None and report.skipped:
        log.info("drift-monitor run skipped: %s", report.skip_reason)
    # The quality check reads the ledger, not the pods: it runs whether the drift part checked,
    # skipped or failed, and its own failure leaves the drift results to be pushed as usual.
    checks_quality = settings.ledger_database_url is not None
    quality = (
        _attempt(QUALITY_FAILED, lambda: check_quality(settings, now=started_at)) if checks_quality else None
    )

    if report is not None:
        sys.stdout.write(dataclasses.replace(report, quality=quality).to_json() + "\n")
        sys.stdout.flush()
    if settings.pushgateway_url:
        report, quality = _push(settings.pushgateway_url, report, quality, checks_quality, started_at)
    if settings.monitoring_experiment:
        if report is not None and not report.skipped:  # a skip has no version to record
            _record(settings.mlflow_tracking_uri, settings.monitoring_experiment, report)
        if quality is not None:
            _record(settings.mlflow_tracking_uri, settings.monitoring_experiment, quality)
    return EXIT_FAILED if report is None or (checks_quality and quality is None) else EXIT_OK


def _attempt(what: str, step: Callable[[], T]) -> T | None:
    """One part of the run; its failure is one ERROR line and None."""
    try:
        return step()
    except Exception as exc:
        _log_failure(what, exc)
        return None


def _log_failure(what: str, exc: Exception) -> None:
    """`<what>: <reason>` in one line; an unexpected error names its type, with the traceback at DEBUG."""
    if isinstance(exc, DriftMonitorError):
        log.error("%s: %s", what, exc)
    else:
        log.error("%s with an unexpected error: %s: %s", what, type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)


def _push(
    gateway: str,
    report: RunReport | None,
    quality: QualityReport | None,
    checks_quality: bool,
    started_at: float,
) -> tuple[RunReport | None, QualityReport | None]:
    """Each part's results, or its failure, to its own group; a part whose push fails has failed."""
    from drift_monitor.push import push_failure, push_quality, push_quality_failure, push_report

    if report is not None:
        try:
            push_report(gateway, report)
        except Exception as exc:
            _log_failure(DRIFT_FAILED, exc)
            report = None
    if report is None:
        push_failure(gateway, started_at=started_at, finished_at=time.time())
    if quality is not None:
        try:
            push_quality(gateway, quality)
        except Exception as exc:
            _log_failure(QUALITY_FAILED, exc)
            quality = None
    if checks_quality and quality is None:
        push_quality_failure(gateway)
    return report, quality


def _record(tracking_uri: str, experiment: str, report: RunReport | QualityReport) -> None:
    """Optional: a failure here is logged, the run still counts as completed (the metrics are pushed)."""
    from mlflow import MlflowClient

    from drift_monitor.tracking import record_quality, record_report

    try:
        if isinstance(report, QualityReport):
            record_quality(MlflowClient(tracking_uri), experiment, report)
        else:
            record_report(MlflowClient(tracking_uri), experiment, report)
    except Exception:
        log.warning("could not record the report in MLflow", exc_info=True)


if __name__ == "__main__":
    sys.exit(main())
