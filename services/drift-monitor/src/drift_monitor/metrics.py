"""Every metric the drift monitor pushes, defined once (names and labels: docs/interfaces.md): the drift
check's under `job="drift-monitor"`, the quality check's under `job="model-quality"`.

A run builds a fresh registry from its report; nothing is global, because a one-shot job pushes
its state instead of being scraped.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge

from drift_monitor.report import QualityReport, RunReport

VERSION = ("model_name", "model_version")
FEATURE = (*VERSION, "feature")
SHADOW = (*VERSION, "shadow_version")  # model_version is the served one; few versions, so bounded

METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "drift_feature_p_value": ("p-value of the feature's drift test (KS or chi-squared).", FEATURE),
    "drift_feature_effect_size": (
        "Population Stability Index of the feature against the reference.",
        FEATURE,
    ),
    "drift_feature_drifted": ("1 if the feature's p-value is below the corrected threshold.", FEATURE),
    "drift_detected": ("1 if the data drift test rejects 'no drift' for the model version.", VERSION),
    "drift_features_drifted_ratio": ("Share of the features that drifted.", VERSION),
    "drift_prediction_p_value": ("p-value of the KS test on the served predictions.", VERSION),
    "drift_prediction_effect_size": ("Population Stability Index of the served predictions.", VERSION),
    "drift_prediction_detected": ("1 if the served predictions drifted.", VERSION),
    "drift_samples_evaluated": ("Samples of the model version in the window.", VERSION),
    "drift_enough_data": ("1 if the window held at least DRIFT_MONITOR_MIN_SAMPLES samples.", VERSION),
    "drift_pods_scraped": ("Predictor pods whose samples were read.", ()),
    "drift_pods_failed": ("Predictor pods that could not be read.", ()),
    "drift_run_duration_seconds": ("Wall time of the last run.", ()),
    "drift_last_run_timestamp_seconds": ("When the last run ended, successful or not.", ()),
    "drift_last_success_timestamp_seconds": ("When the last successful run (checked or skipped) ended.", ()),
    "drift_last_run_success": ("1 if the last run completed (checked or skipped), 0 if it failed.", ()),
    "drift_last_run_skipped": ("1 if the last run found no ready predictor pod to check, else 0.", ()),
}
RUN_STATUS = (
    "drift_last_run_timestamp_seconds",
    "drift_last_run_success",
    "drift_last_run_skipped",
    "drift_run_duration_seconds",
)
# What a skipped run knows: its status, and that it read no pod. No verdict series, so the last ones stay.
SKIP_STATUS = (*RUN_STATUS, "drift_last_success_timestamp_seconds", "drift_pods_scraped", "drift_pods_failed")


def report_registry(report: RunReport) -> CollectorRegistry:
    """The full state of a completed run; verdict metrics only for versions with enough data."""
    registry = CollectorRegistry()
    g = _gauges(registry, METRICS)
    for v in report.versions:
        labels = (v.model_name, v.model_version)
        g["drift_samples_evaluated"].labels(*labels).set(v.samples)
        g["drift_enough_data"].labels(*labels).set(int(v.enough_data))
        if not v.enough_data:
            continue  # no verdict: an absent series, not a misleading 0
        g["drift_detected"].labels(*labels).set(int(bool(v.drift_detected)))
        g["drift_features_drifted_ratio"].labels(*labels).set(v.drifted_ratio or 0.0)
        for f in v.features:
            g["drift_feature_p_value"].labels(*labels, f.feature).set(f.p_value)
            g["drift_feature_effect_size"].labels(*labels, f.feature).set(f.effect_size)
            g["drift_feature_drifted"].labels(*labels, f.feature).set(int(f.drifted))
        if v.prediction is not None:
            g["drift_prediction_p_value"].labels(*labels).set(v.prediction.p_value)
            g["drift_prediction_effect_size"].labels(*labels).set(v.prediction.effect_size)
            g["drift_prediction_detected"].labels(*labels).set(int(v.prediction.drifted))
    _set_completed(g, report)
    return registry


def skip_registry(report: RunReport) -> CollectorRegistry:
    """A run with nothing to check: it succeeded (the monitor works; PredictorDown and ModelNotLoaded
    report the missing pods) and says it skipped; the verdict series are left out."""
    registry = CollectorRegistry()
    _set_completed(_gauges(registry, SKIP_STATUS), report)
    return registry


def failure_registry(*, started_at: float, finished_at: float) -> CollectorRegistry:
    """Only the run-status metrics of a failed run; the last success and last verdicts stay as they were."""
    registry = CollectorRegistry()
    _set_run_status(
        _gauges(registry, RUN_STATUS), started_at=started_at, finished_at=finished_at, success=False
    )
    return registry


def _set_completed(g: dict[str, Gauge], report: RunReport) -> None:
    g["drift_pods_scraped"].set(report.pods_scraped)
    g["drift_pods_failed"].set(report.pods_failed)
    g["drift_last_success_timestamp_seconds"].set(report.finished_at)
    _set_run_status(
        g,
        started_at=report.started_at,
        finished_at=report.finished_at,
        success=True,
        skipped=report.skipped,
    )


def _set_run_status(
    g: dict[str, Gauge], *, started_at: float, finished_at: float, success: bool, skipped: bool = False
) -> None:
    g["drift_last_run_timestamp_seconds"].set(finished_at)
    g["drift_last_run_success"].set(int(success))
    g["drift_last_run_skipped"].set(int(skipped))
    g["drift_run_duration_seconds"].set(finished_at - started_at)


def _gauges(
    registry: CollectorRegistry,
    names: Iterable[str],
    metrics: dict[str, tuple[str, tuple[str, ...]]] = METRICS,
) -> dict[str, Gauge]:
    """Only the named gauges: an unlabelled gauge is exported (as 0) as soon as it exists."""
    return {name: Gauge(name, metrics[name][0], metrics[name][1], registry=registry) for name in names}


# ---------------------------------------------------------------- the quality check (job="model-quality")
QUALITY_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "model_quality_labelled_rows": ("Matured predictions in the window that have a label.", VERSION),
    "model_quality_ledger_rows": ("Matured predictions in the window, labelled or not.", VERSION),
    "model_quality_mae": ("Mean absolute error of the labelled predictions.", VERSION),
    "model_quality_rmse": ("Root mean squared error of the labelled predictions.", VERSION),
    "model_quality_bias": ("Mean of prediction - actual (negative: predicts too low).", VERSION),
    "model_quality_reference_mae": ("The training run's reference_mae (the yardstick).", VERSION),
    # A shadow version against the served one, on the labelled rows both scored (not in the series above).
    "model_quality_shadow_labelled_rows": (
        "Labelled predictions of the served version that the shadow version also scored.",
        SHADOW,
    ),
    "model_quality_shadow_mae": ("Mean absolute error of the shadow version on those rows.", SHADOW),
    "model_quality_shadow_rmse": ("Root mean squared error of the shadow version on those rows.", SHADOW),
    "model_quality_shadow_bias": ("Mean of shadow prediction - actual on those rows.", SHADOW),
    "model_quality_shadow_served_mae": (
        "Mean absolute error of the served version on the same rows.",
        SHADOW,
    ),
    "model_quality_shadow_served_rmse": (
        "Root mean squared error of the served version on the same rows.",
        SHADOW,
    ),
    "model_quality_shadow_served_bias": (
        "Mean of prediction - actual of the served version on the same rows.",
        SHADOW,
    ),
    "model_quality_max_mae_ratio": ("DRIFT_MONITOR_QUALITY_MAX_MAE_RATIO (ModelQualityDegraded).", ()),
    "model_quality_min_labelled_rows": (
        "DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS (ModelQualityDegraded).",
        (),
    ),
    "model_quality_labels_missing_after_seconds": (
        "DRIFT_MONITOR_LABELS_MISSING_AFTER_SECONDS (LabelsMissing).",
        (),
    ),
    "model_quality_last_label_timestamp_seconds": (
        "Newest label's arrival; without any label, the oldest prediction's time.",
        (),
    ),
    "model_quality_last_success_timestamp_seconds": ("When the last successful quality check ended.", ()),
    "model_quality_last_run_success": ("1 if the last quality check completed, 0 if it failed.", ()),
}


def quality_registry(report: QualityReport) -> CollectorRegistry:
    """The full state of a completed quality check. Errors only for versions with a labelled row and the
    reference only where the training run has one: an absent series, never a misleading 0."""
    registry = CollectorRegistry()
    last_label = "model_quality_last_label_timestamp_seconds"
    names = [n for n in QUALITY_METRICS if n != last_label or report.last_label_at is not None]
    g = _gauges(registry, names, QUALITY_METRICS)  # an empty ledger has no last label: absent, not 0
    for v in report.versions:
        labels = (v.model_name, v.model_version)
        g["model_quality_labelled_rows"].labels(*labels).set(v.labelled_rows)
        g["model_quality_ledger_rows"].labels(*labels).set(v.ledger_rows)
        for name, value in (
            ("model_quality_mae", v.mae),
            ("model_quality_rmse", v.rmse),
            ("model_quality_bias", v.bias),
            ("model_quality_reference_mae", v.reference_mae),
        ):
            if value is not None:
                g[name].labels(*labels).set(value)
    for pair in report.shadows:  # no shadow rows: these gauges have no series at all
        pair_labels = (pair.model_name, pair.model_version, pair.shadow_version)
        for name, value in (
            ("model_quality_shadow_labelled_rows", pair.labelled_rows),
            ("model_quality_shadow_mae", pair.shadow_mae),
            ("model_quality_shadow_rmse", pair.shadow_rmse),
            ("model_quality_shadow_bias", pair.shadow_bias),
            ("model_quality_shadow_served_mae", pair.served_mae),
            ("model_quality_shadow_served_rmse", pair.served_rmse),
            ("model_quality_shadow_served_bias", pair.served_bias),
        ):
            g[name].labels(*pair_labels).set(value)
    # The rule file is static; the thresholds the alerts compare with travel as series.
    g["model_quality_max_mae_ratio"].set(report.max_mae_ratio)
    g["model_quality_min_labelled_rows"].set(report.min_labelled_rows)
    g["model_quality_labels_missing_after_seconds"].set(report.labels_missing_after_seconds)
    if report.last_label_at is not None:
        g[last_label].set(report.last_label_at)
    g["model_quality_last_success_timestamp_seconds"].set(report.finished_at)
    g["model_quality_last_run_success"].set(1)
    return registry


def quality_failure_registry() -> CollectorRegistry:
    """A failed quality check: only its status; the last check's numbers and last success stay."""
    registry = CollectorRegistry()
    status = "model_quality_last_run_success"
    _gauges(registry, [status], QUALITY_METRICS)[status].set(0)
    return registry
