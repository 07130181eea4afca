"""What one run found: per served model version, the drift verdicts, p-values and effect sizes, and (with a
ledger) each version's live errors against delayed labels, and a shadow version's beside the served one's.

The same objects feed the Pushgateway metrics, the JSON report on stdout and the MLflow runs; the JSON's
fields are these dataclasses' fields (an example: the service's README; `quality`: docs/interfaces.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's line in the report: the test, its p-value, the effect size and the verdict."""

    feature: str
    test: str
    """`ks` (numeric) or `chi2` (categorical)."""
    statistic: float
    p_value: float
    effect_size: float
    """Population Stability Index of the window against the reference."""
    drifted: bool


@dataclass(frozen=True)
class PredictionDrift:
    """Whether the served predictions moved away from the predictions on the reference rows."""

    statistic: float
    """KS statistic of the served predictions against the reference predictions."""
    p_value: float
    effect_size: float
    """PSI of the served predictions against the reference predictions."""
    drifted: bool


@dataclass(frozen=True)
class VersionReport:
    """The verdict for one served model version (or "not enough data"), as pushed, printed and recorded."""

    model_name: str
    model_version: str
    reference_run_id: str
    samples: int
    """Samples in the window that could be tested (rows with a missing number are left out)."""
    enough_data: bool
    drift_detected: bool | None = None
    """None when there is not enough data for a verdict."""
    drifted_ratio: float | None = None
    threshold: float | None = None
    """Per-feature p-value threshold after the multiple-testing correction."""
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: PredictionDrift | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


@dataclass(frozen=True)
class VersionQuality:
    """One model version's live quality: its matured predictions in the window joined with their labels."""

    model_name: str
    model_version: str
    ledger_rows: int
    """Matured predictions in the window, labelled or not."""
    labelled_rows: int
    mae: float | None
    """None (and not pushed) without a labelled row; likewise rmse and bias."""
    rmse: float | None
    bias: float | None
    """Mean of prediction − actual: negative means the model predicts too low."""
    reference_mae: float | None
    """`reference_mae` of the version's training run (its validation MAE, or its MAE on the ledger's gate rows
    when it was trained on them); None when it has none (reference_missing says why)."""
    reference_run_id: str | None
    reference_missing: str | None
    mae_ratio: float | None
    """mae / reference_mae."""
    enough_labels: bool
    """labelled_rows >= DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS."""
    degraded: bool | None
    """What ModelQualityDegraded decides from the pushed series: mae_ratio > max_mae_ratio with enough
    labels; None when it cannot judge (not enough labels, no reference)."""


@dataclass(frozen=True)
class ShadowQuality:
    """A shadow version against the served one on the same labelled rows (PREDICTOR_SHADOW_ALIAS): the rows
    the served version answered and the shadow also scored. Not part of either version's VersionQuality:
    shadow predictions were never served."""

    model_name: str
    model_version: str
    """The served version."""
    shadow_version: str
    labelled_rows: int
    served_mae: float
    served_rmse: float
    served_bias: float
    shadow_mae: float
    shadow_rmse: float
    shadow_bias: float
    mae_difference: float
    """shadow_mae − served_mae: negative means the shadow version would have erred less."""
    enough_labels: bool
    """labelled_rows >= DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS; fewer rows make a noisy comparison."""

    def summary(self) -> str:
        """One line for the log, e.g. `shadow v3 vs served v2 on 412 labelled rows: MAE 14.10 vs 17.92 (-3.82)`."""
        return (
            f"shadow v{self.shadow_version} vs served v{self.model_version} on {self.labelled_rows} "
            f"labelled rows: MAE {self.shadow_mae:.2f} vs {self.served_mae:.2f} ({self.mae_difference:+.2f})"
        )


@dataclass(frozen=True)
class QualityReport:
    """The quality part of a run: the window scored, the settings the alerts compare with, per version."""

    checked_at: float
    """The run's start: the window ends label_delay_seconds before it."""
    finished_at: float
    window_start: float
    window_end: float
    window_seconds: int
    label_delay_seconds: int
    min_labelled_rows: int
    max_mae_ratio: float
    labels_missing_after_seconds: int
    last_label_at: float | None
    """Newest label's arrival; without any label, the oldest prediction's time; None for an empty ledger."""
    last_label_source: str | None
    """`label`, `prediction` (no label yet) or None."""
    versions: list[VersionQuality]
    shadows: list[ShadowQuality] = field(default_factory=list)
    """Per (served version, shadow version) with paired labelled rows; empty without a shadow model."""


@dataclass(frozen=True)
class RunReport:
    """Everything one run found: the single source of the JSON on stdout, the pushed metrics and the MLflow run."""

    started_at: float
    finished_at: float
    window_seconds: int
    p_value: float
    correction: str
    min_samples: int
    pods_scraped: int
    pods_failed: int
    pod_errors: dict[str, str]
    versions: list[VersionReport]
    samples_skipped: int = 0
    """Samples of other registered models than DRIFT_MONITOR_MODEL_NAME."""
    skip_reason: str | None = None
    """Why the run checked nothing (no ready predictor pod yet); None for a run that checked."""
    quality: QualityReport | None = None
    """The live quality check; None when DRIFT_MONITOR_LEDGER_DATABASE_URL is unset or the check failed."""

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None

    @property
    def duration_seconds(self) -> float:
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": self.skipped, "duration_seconds": self.duration_seconds}

    def to_json(self) -> str:
        """One compact line: statistics to 4 significant digits, timestamps to the millisecond."""
        data = self.to_dict()
        for version in data["versions"]:
            version["drifted_features"] = [f["feature"] for f in version["features"] if f["drifted"]]
        return json.dumps(_round(data), separators=(",", ":"), allow_nan=False)


def _round(value: object) -> object:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, 3) if abs(value) >= 1e4 else float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value
