"""The price level a retrain learns from the newest labelled rows (docs/model.md, "Retraining on
production labels").

The year's price level is in no feature (arrival month and weekday only), so fitting the recent rows
alongside years of older ones barely moves the predictions: the trees average them with the same months
of earlier years. One multiplicative factor, learned on labelled rows the pipeline was not fitted on,
carries the current level: explicit, one logged number, bounded, and judged by the gate like any model.

The registry stores this class by value (cloudpickle), so a predictor loads it without the trainer's
code; it needs only what it imports: numpy and scikit-learn, both in every image that loads models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, RegressorMixin

FACTOR_BOUNDS = (0.5, 2.0)
"""A level change outside ×0.5…×2 is not a drift to recalibrate for but a broken feed: clipped."""


class LevelRecalibrated(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A fitted pipeline whose predictions are scaled by one factor."""

    def __init__(self, pipeline: Any, factor: float = 1.0) -> None:
        self.pipeline = pipeline
        self.factor = factor

    def predict(self, X: pd.DataFrame) -> NDArray[np.float64]:
        return np.asarray(self.pipeline.predict(X), dtype=float) * self.factor


def level_factor(actual: NDArray[Any], predicted: NDArray[Any]) -> float:
    """Σ actual / Σ predicted, clipped to FACTOR_BOUNDS: the factor that removes the mean bias on these
    rows in relative terms (prices scale with the level, so a ratio, not an offset). 1 without rows."""
    total = float(np.sum(predicted))
    if len(actual) == 0 or total <= 0:
        return 1.0
    return float(np.clip(float(np.sum(actual)) / total, *FACTOR_BOUNDS))
