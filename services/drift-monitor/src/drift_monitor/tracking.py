"""Record each run's results in MLflow, so drift and quality over time can be browsed next to the training runs.

One MLflow run per evaluated model version and monitor run, in the monitoring experiment, tagged
with the model version and its training run. Metric names are the same for every run (the
feature name is part of the key), so the MLflow UI can chart a feature's p-value or PSI over time.

The quality check records its own runs, `quality-v<version>-<time>` (tag `check`=`quality`; drift runs
have `check`=`drift`), not extra metrics on the drift run: its versions come from a week of ledger rows
rather than the last hour's samples (a version no longer served still has labels arriving), it runs
when the drift part skips or fails, and its window and settings are other params. A shadow version's
comparison goes on the served version's quality run, keyed by the shadow version (`shadow_mae.v3`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from drift_monitor.report import QualityReport, RunReport, ShadowQuality, VersionQuality, VersionReport

log = logging.getLogger(__name__)


def record_report(client: MlflowClient, experiment_name: str, report: RunReport) -> list[str]:
    """Log every version of the report as a finished run; returns the run ids."""
    experiment_id = _experiment_id(client, experiment_name)
    started = _stamp(report.started_at)
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
                "check": "drift",
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
    everything.pop("quality")  # recorded in its own runs
    everything["versions"] = [
        v for v in everything["versions"] if v["model_version"] == version.model_version
    ]
    return everything


def record_quality(client: MlflowClient, experiment_name: str, report: QualityReport) -> list[str]:
    """Log every version of the quality check as a finished run; returns the run ids."""
    experiment_id = _experiment_id(client, experiment_name)
    run_ids = []
    for version in report.versions:
        run = client.create_run(
            experiment_id,
            start_time=int(report.checked_at * 1000),
            run_name=f"quality-v{version.model_version}-{_stamp(report.checked_at)}",
            tags={
                "model_name": version.model_name,
                "model_version": version.model_version,
                "reference_run_id": version.reference_run_id or "",
                "check": "quality",
                "degraded": str(version.degraded).lower(),
            },
        )
        run_id = run.info.run_id
        step_ms = int(report.finished_at * 1000)
        shadows = [s for s in report.shadows if s.model_version == version.model_version]
        metrics = {**_quality_metrics(version), **_shadow_metrics(shadows)}
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, step_ms, 0) for key, value in metrics.items()],
            params=[
                Param("window_seconds", str(report.window_seconds)),
                Param("label_delay_seconds", str(report.label_delay_seconds)),
                Param("min_labelled_rows", str(report.min_labelled_rows)),
                Param("max_mae_ratio", str(report.max_mae_ratio)),
            ],
            tags=[RunTag("mlflow.source.name", "drift-monitor")],
        )
        client.set_terminated(run_id, end_time=step_ms)
        run_ids.append(run_id)
    log.info("recorded the quality check in MLflow", extra={"experiment": experiment_name, "runs": run_ids})
    return run_ids


def _quality_metrics(version: VersionQuality) -> dict[str, float]:
    values = {
        "labelled_rows": version.labelled_rows,
        "ledger_rows": version.ledger_rows,
        "mae": version.mae,
        "rmse": version.rmse,
        "bias": version.bias,
        "reference_mae": version.reference_mae,
        "mae_ratio": version.mae_ratio,
    }
    return {key: float(value) for key, value in values.items() if value is not None}


def _shadow_metrics(shadows: list[ShadowQuality]) -> dict[str, float]:
    """Each shadow version's comparison with this served version, on the rows both scored."""
    metrics = {}
    for s in shadows:
        for key, value in (
            ("shadow_labelled_rows", s.labelled_rows),
            ("shadow_mae", s.shadow_mae),
            ("shadow_rmse", s.shadow_rmse),
            ("shadow_bias", s.shadow_bias),
            ("shadow_served_mae", s.served_mae),
            ("shadow_served_rmse", s.served_rmse),
            ("shadow_served_bias", s.served_bias),
            ("shadow_mae_difference", s.mae_difference),
        ):
            metrics[f"{key}.v{s.shadow_version}"] = float(value)
    return metrics


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _stamp(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
