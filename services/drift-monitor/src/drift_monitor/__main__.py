"""`drift-monitor`: one monitoring run per call (a Kubernetes CronJob, or by hand against local pods).

Exit status 0 means the run completed, whether it found drift or not (drift is reported through
the metrics and alerts, not the exit code), or that it had nothing to check: discovery found no
ready predictor pod, as on a fresh install before the first model (one log line says so, the report
and `drift_last_run_skipped` record it). 1 means it failed: the reason is one log line on stderr,
and the Pushgateway (if any) learns that the run failed. 2 means bad usage or invalid settings: one
line `drift-monitor: invalid settings: <VARIABLE>: <problem>` on stderr. The JSON report goes to stdout.

    drift-monitor --targets http://127.0.0.1:8080 --pushgateway http://127.0.0.1:9091
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from pydantic import ValidationError

from drift_monitor.config import Settings, describe_settings_error
from drift_monitor.errors import DriftMonitorError
from drift_monitor.logging import configure_logging

if TYPE_CHECKING:
    from drift_monitor.report import RunReport

log = logging.getLogger("drift_monitor")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="drift-monitor",
        description="Test the predictors' recent samples for drift against the model's training reference, once.",
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
    from drift_monitor.push import push_failure, push_report

    try:
        report = run(settings, started_at=started_at)
        if report.skipped:
            log.info("drift-monitor run skipped: %s", report.skip_reason)
        sys.stdout.write(report.to_json() + "\n")
        sys.stdout.flush()
        if settings.pushgateway_url:
            push_report(settings.pushgateway_url, report)
    except Exception as exc:
        if isinstance(exc, DriftMonitorError):
            log.error("drift-monitor run failed: %s", exc)
        else:
            # One line like the other failures; the traceback at DEBUG (LOG_LEVEL=DEBUG shows it).
            log.error("drift-monitor run failed with an unexpected error: %s: %s", type(exc).__name__, exc)
            log.debug("traceback", exc_info=True)
        if settings.pushgateway_url:
            push_failure(settings.pushgateway_url, started_at=started_at, finished_at=time.time())
        return EXIT_FAILED
    if settings.monitoring_experiment and not report.skipped:  # a skip has no version to record
        _record(settings.mlflow_tracking_uri, settings.monitoring_experiment, report)
    return EXIT_OK


def _record(tracking_uri: str, experiment: str, report: RunReport) -> None:
    """Optional: a failure here is logged, the run still counts as completed (the metrics are pushed)."""
    from mlflow import MlflowClient

    from drift_monitor.tracking import record_report

    try:
        record_report(MlflowClient(tracking_uri), experiment, report)
    except Exception:
        log.warning("could not record the report in MLflow", exc_info=True)


if __name__ == "__main__":
    sys.exit(main())
