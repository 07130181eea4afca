"""Judge one model version's window of samples against its reference."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from drift_monitor.detectors import Correction, detect_data_drift, detect_prediction_drift
from drift_monitor.effect_size import psi
from drift_monitor.encoding import encode, numeric_complete_rows
from drift_monitor.reference import Reference
from drift_monitor.report import FeatureDrift, PredictionDrift, VersionReport

log = logging.getLogger(__name__)


def evaluate_version(
    reference: Reference,
    features: pd.DataFrame,
    predictions: NDArray[Any],
    *,
    min_samples: int,
    p_value: float,
    correction: Correction,
) -> VersionReport:
    """Data drift and prediction drift of a window, or "not enough data" below `min_samples` rows."""
    spec = reference.spec
    current = encode(features, spec)
    usable = numeric_complete_rows(current, spec) & np.isfinite(predictions)
    current, predictions = current[usable], predictions[usable]
    ref = encode(reference.features, spec)
    ref_usable = numeric_complete_rows(ref, spec)
    ref, ref_predictions = ref[ref_usable], reference.predictions.to_numpy()[ref_usable]
    labels = {"model_name": reference.model_name, "model_version": reference.model_version}
    if (~usable).any():
        log.warning(
            "samples with a missing numeric feature or prediction left out",
            extra={**labels, "samples": int((~usable).sum())},
        )

    base = VersionReport(
        model_name=reference.model_name,
        model_version=reference.model_version,
        reference_run_id=reference.run_id,
        samples=len(current),
        enough_data=len(current) >= min_samples,
    )
    if not base.enough_data:
        log.info(
            "not enough data for a verdict",
            extra={**labels, "samples": len(current), "min_samples": min_samples},
        )
        return base

    categorical_columns = [i for i, f in enumerate(spec.features) if f in spec.categorical]
    data = detect_data_drift(
        ref,
        current,
        feature_names=spec.features,
        categorical_columns=categorical_columns,
        p_value=p_value,
        correction=correction,
    )
    features_report = [
        FeatureDrift(
            feature=test.feature,
            test=test.test,
            statistic=test.statistic,
            p_value=test.p_value,
            effect_size=psi(ref[:, i], current[:, i], categorical=i in categorical_columns),
            drifted=test.drifted,
        )
        for i, test in enumerate(data.features)
    ]
    ks = detect_prediction_drift(ref_predictions, predictions, p_value=p_value)
    prediction = PredictionDrift(
        statistic=ks.statistic,
        p_value=ks.p_value,
        effect_size=psi(ref_predictions, predictions, categorical=False),
        drifted=ks.detected,
    )
    drifted = [f.feature for f in features_report if f.drifted]
    log.info(
        "drift verdict",
        extra={
            **labels,
            "samples": len(current),
            "drift_detected": data.detected,
            "drifted_features": drifted,
            "prediction_drift": prediction.drifted,
        },
    )
    return replace(
        base,
        drift_detected=data.detected,
        drifted_ratio=len(drifted) / len(features_report) if features_report else 0.0,
        threshold=data.threshold,
        features=features_report,
        prediction=prediction,
    )
