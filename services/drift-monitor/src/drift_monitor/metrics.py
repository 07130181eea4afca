"""Every metric the drift monitor pushes, defined once (names and labels: docs/interfaces.md).

A run builds a fresh registry from its report; nothing is global, because a one-shot job pushes
its state instead of being scraped.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from drift_monitor.report import RunReport

VERSION_LABELS = ("model_name", "model_version")
FEATURE_LABELS = (*VERSION_LABELS, "feature")


def report_registry(report: RunReport) -> CollectorRegistry:
    """The full state of a completed run; verdict metrics only for versions with enough data."""
    registry = CollectorRegistry()
    g = _gauges(registry)
    for v in report.versions:
        labels = (v.model_name, v.model_version)
        g["samples"].labels(*labels).set(v.samples)
        g["enough_data"].labels(*labels).set(int(v.enough_data))
        if not v.enough_data:
            continue  # no verdict: an absent series, not a misleading 0
        g["detected"].labels(*labels).set(int(bool(v.drift_detected)))
        g["drifted_ratio"].labels(*labels).set(v.drifted_ratio or 0.0)
        for f in v.features:
            g["feature_p_value"].labels(*labels, f.feature).set(f.p_value)
            g["feature_effect_size"].labels(*labels, f.feature).set(f.effect_size)
            g["feature_drifted"].labels(*labels, f.feature).set(int(f.drifted))
        if v.prediction is not None:
            g["prediction_p_value"].labels(*labels).set(v.prediction.p_value)
            g["prediction_effect_size"].labels(*labels).set(v.prediction.effect_size)
            g["prediction_detected"].labels(*labels).set(int(v.prediction.drifted))
    g["pods_scraped"].set(report.pods_scraped)
    g["pods_failed"].set(report.pods_failed)
    _set_run_status(g, started_at=report.started_at, finished_at=report.finished_at, success=True)
    g["last_success"].set(report.finished_at)
    return registry


def failure_registry(*, started_at: float, finished_at: float) -> CollectorRegistry:
    """Only the run-status metrics of a failed run; the last success and last verdicts stay as they were."""
    registry = CollectorRegistry()
    _set_run_status(_gauges(registry), started_at=started_at, finished_at=finished_at, success=False)
    return registry


def _set_run_status(g: dict[str, Gauge], *, started_at: float, finished_at: float, success: bool) -> None:
    g["last_run"].set(finished_at)
    g["last_run_success"].set(int(success))
    g["duration"].set(finished_at - started_at)


def _gauges(registry: CollectorRegistry) -> dict[str, Gauge]:
    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    return {
        "feature_p_value": gauge(
            "drift_feature_p_value",
            "p-value of the feature's drift test (KS or chi-squared).",
            FEATURE_LABELS,
        ),
        "feature_effect_size": gauge(
            "drift_feature_effect_size",
            "Population Stability Index of the feature against the reference.",
            FEATURE_LABELS,
        ),
        "feature_drifted": gauge(
            "drift_feature_drifted",
            "1 if the feature's p-value is below the corrected threshold.",
            FEATURE_LABELS,
        ),
        "detected": gauge(
            "drift_detected",
            "1 if the data drift test rejects 'no drift' for the model version.",
            VERSION_LABELS,
        ),
        "drifted_ratio": gauge(
            "drift_features_drifted_ratio", "Share of the features that drifted.", VERSION_LABELS
        ),
        "prediction_p_value": gauge(
            "drift_prediction_p_value", "p-value of the KS test on the served predictions.", VERSION_LABELS
        ),
        "prediction_effect_size": gauge(
            "drift_prediction_effect_size",
            "Population Stability Index of the served predictions.",
            VERSION_LABELS,
        ),
        "prediction_detected": gauge(
            "drift_prediction_detected", "1 if the served predictions drifted.", VERSION_LABELS
        ),
        "samples": gauge(
            "drift_samples_evaluated", "Samples of the model version in the window.", VERSION_LABELS
        ),
        "enough_data": gauge(
            "drift_enough_data",
            "1 if the window held enough samples for a verdict (DRIFT_MONITOR_MIN_SAMPLES).",
            VERSION_LABELS,
        ),
        "pods_scraped": gauge("drift_pods_scraped", "Predictor pods whose samples were read."),
        "pods_failed": gauge("drift_pods_failed", "Predictor pods that could not be read."),
        "duration": gauge("drift_run_duration_seconds", "Wall time of the last run."),
        "last_run": gauge("drift_last_run_timestamp_seconds", "When the last run ended, successful or not."),
        "last_success": gauge("drift_last_success_timestamp_seconds", "When the last successful run ended."),
        "last_run_success": gauge("drift_last_run_success", "1 if the last run completed, 0 if it failed."),
    }
