"""Record each run's results in MLflow, so drift over time can be browsed next to the training runs.

One MLflow run per evaluated model version and monitor run, in the monitoring experiment, tagged
with the model version and its training run. Metric names are the same for every run (the
feature name is part of the key), so the MLflow UI can chart a feature's p-value or PSI over time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from drift_monitor.report import RunReport, VersionReport

log = logging.getLogger(__name__)


def record_report(client: MlflowClient, experiment_name: str, report: RunReport) -> list[str]:
    """Log every version of the report as a finished run; returns the run ids."""
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    started = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_ids = []
    for version in report.versions:
        run = client.create_run(
            experiment_id,
            start_time=int(report.started_at * 1000),
            run_name=f"drift-v{version.model_version}-{started}",
            tags={
                "model_name": version.model_name,
                "model_version": version.model_version,
                "reference_run_id": version.reference_run_id,
                "drift_detected": str(version.drift_detected).lower(),
            },
        )
        run_id = run.info.run_id
        step_ms = int(report.finished_at * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, step_ms, 0) for key, value in _metrics(version).items()],
            params=[
                Param("window_seconds", str(report.window_seconds)),
                Param("p_value", str(report.p_value)),
                Param("correction", report.correction),
                Param("min_samples", str(report.min_samples)),
            ],
            tags=[RunTag("mlflow.source.name", "drift-monitor")],
        )
        client.log_dict(run_id, _version_document(report, version), "drift_report.json")
        client.set_terminated(run_id, end_time=step_ms)
        run_ids.append(run_id)
    log.info("recorded the report in MLflow", extra={"experiment": experiment_name, "runs": run_ids})
    return run_ids


def _metrics(version: VersionReport) -> dict[str, float]:
    metrics = {"samples_evaluated": float(version.samples), "enough_data": float(version.enough_data)}
    if not version.enough_data:
        return metrics
    metrics["drift_detected"] = float(bool(version.drift_detected))
    metrics["features_drifted_ratio"] = float(version.drifted_ratio or 0.0)
    for f in version.features:
        metrics[f"p_value.{f.feature}"] = f.p_value
        metrics[f"effect_size.{f.feature}"] = f.effect_size
    if version.prediction is not None:
        metrics["prediction_p_value"] = version.prediction.p_value
        metrics["prediction_effect_size"] = version.prediction.effect_size
    return metrics


def _version_document(report: RunReport, version: VersionReport) -> dict[str, Any]:
    everything = report.to_dict()
    everything["versions"] = [
        v for v in everything["versions"] if v["model_version"] == version.model_version
    ]
    return everything
