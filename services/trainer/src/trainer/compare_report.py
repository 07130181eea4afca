"""Where a comparison's report goes: an MLflow run (metrics, tags, `comparison.json`) with tags on the
challenger's version, and, when TRAINER_PUSHGATEWAY_URL is set, gauges on the Pushgateway.

The push replaces the group `job="model-comparison", model_name=<model>`: the series of versions compared
before disappear, so a dashboard shows only the current pair. It comes after the MLflow run, and a
failed push is a warning: the report is already kept.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from trainer.compare import VERDICTS, Comparison

log = logging.getLogger(__name__)

JOB = "model-comparison"
TIMEOUT_SECONDS = 10


def run_name(c: Comparison) -> str:
    return f"compare {c.champion.alias} v{c.champion.version} vs {c.challenger.alias} v{c.challenger.version}"


def log_to_mlflow(client: MlflowClient, experiment_name: str, c: Comparison) -> str:
    """One finished run holding the comparison; the challenger's version is tagged with its verdict.
    Returns the run id."""
    tags = {
        "comparison_verdict": c.verdict,
        "comparison_mode": c.mode,
        "model_name": c.model,
        "champion_alias": c.champion.alias,
        "champion_version": c.champion.version,
        "challenger_alias": c.challenger.alias,
        "challenger_version": c.challenger.version,
    }
    params = {"min_rows": c.min_rows, "min_improvement": c.min_improvement} | {
        f"window_{k}": v for k, v in c.window.items() if v is not None
    }
    if c.difference is not None:
        params["bootstrap_samples"] = c.difference.bootstrap_samples
    now_ms = int(time.time() * 1000)
    metrics = [Metric(key, value, now_ms, 0) for key, value in _numbers(c).items()]
    run = client.create_run(_experiment_id(client, experiment_name), run_name=run_name(c), tags=tags)
    run_id = str(run.info.run_id)
    try:
        client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        client.log_dict(run_id, c.summary(), "comparison.json")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    version_tags = {
        "comparison_verdict": c.verdict,
        "comparison_run_id": run_id,
        "comparison_champion_version": c.champion.version,
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(c.model, c.challenger.version, key, value)
    return run_id


def push_metrics(gateway: str, c: Comparison, now: datetime) -> bool:
    """Replace the model's `model-comparison` group; False (and a warning) when the Pushgateway refuses."""
    try:
        push_to_gateway(
            gateway,
            job=JOB,
            grouping_key={"model_name": c.model},
            registry=comparison_registry(c, now),
            timeout=TIMEOUT_SECONDS,
        )
    except (OSError, ValueError) as exc:  # urllib errors, non-2xx answers, a malformed URL
        log.warning(
            "could not push the comparison's metrics; the MLflow run has the report",
            extra={"pushgateway": gateway, "error": str(exc)},
        )
        return False
    log.info("pushed comparison metrics", extra={"pushgateway": gateway, "job": JOB})
    return True


def comparison_registry(c: Comparison, now: datetime) -> CollectorRegistry:
    """The gauges of one comparison (names and labels: docs/interfaces.md)."""
    registry = CollectorRegistry()
    arm_labels = ["model_name", "arm", "model_version"]
    mae = Gauge(
        "model_comparison_mae", "MAE of each arm on the rows compared.", arm_labels, registry=registry
    )
    rows = Gauge(
        "model_comparison_rows", "Labelled rows each arm was judged on.", arm_labels, registry=registry
    )
    for arm_name, arm in (("champion", c.champion), ("challenger", c.challenger)):
        rows.labels(c.model, arm_name, arm.version).set(arm.rows)
        if arm.mae is not None:
            mae.labels(c.model, arm_name, arm.version).set(arm.mae)
    if c.difference is not None:
        d = c.difference
        for suffix, value, what in (
            ("", d.mae, "MAE(challenger) − MAE(champion); below 0 the challenger is better."),
            ("_low", d.low, "Lower end of the 95% bootstrap interval of the MAE difference."),
            ("_high", d.high, "Upper end of the 95% bootstrap interval of the MAE difference."),
        ):
            gauge = Gauge(f"model_comparison_mae_difference{suffix}", what, ["model_name"], registry=registry)
            gauge.labels(c.model).set(value)
    verdict = Gauge(
        "model_comparison_verdict",
        "1 for the comparison's verdict, 0 for the others.",
        ["model_name", "verdict"],
        registry=registry,
    )
    for name in VERDICTS:
        verdict.labels(c.model, name).set(int(name == c.verdict))
    stamp = Gauge(
        "model_comparison_timestamp_seconds",
        "When the comparison ran (Unix time).",
        ["model_name"],
        registry=registry,
    )
    stamp.labels(c.model).set(now.timestamp())
    return registry


def _numbers(c: Comparison) -> dict[str, float]:
    """The run's metrics: each arm's rows, MAE, RMSE, bias (and share), and the difference."""
    out: dict[str, float] = {}
    for arm_name, arm in (("champion", c.champion), ("challenger", c.challenger)):
        out[f"{arm_name}_rows"] = arm.rows
        for key in ("mae", "rmse", "bias", "share"):
            value = getattr(arm, key)
            if value is not None:
                out[f"{arm_name}_{key}"] = value
    if c.difference is not None:
        d = c.difference
        out |= {"mae_difference": d.mae, "mae_difference_low": d.low, "mae_difference_high": d.high}
    return out


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # created meanwhile by another run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
