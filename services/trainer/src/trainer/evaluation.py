"""Regression metrics, computed one way everywhere (selection, report, champion gate)."""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error


def regression_metrics(y_true: NDArray[Any], y_pred: NDArray[Any]) -> dict[str, float]:
    return {
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }
