"""The gate on recent labelled rows: champion and challenger predict the same newest rows of production
that neither was fitted on, and the challenger is promoted only if the bootstrap interval of the MAE
difference lies below −TRAINER_GATE_MIN_IMPROVEMENT.

Paired, because both errors of a row move together (a hard booking is hard for both models): resampling
rows and differencing within each row gives a far tighter interval than two independent MAEs would.
`bootstrap` and `judge` are pure; `decide_paired` loads the champion and picks the rows.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from numpy.typing import NDArray

from trainer.errors import TrainerError
from trainer.gate import GateDecision, PairedComparison, current_version

log = logging.getLogger(__name__)

KIND = "paired-recent-labels"
LEDGER_FIT_UNTIL_TAG = "ledger_fit_until"
"""On a version trained with the ledger: the newest predicted_at of the rows it was fitted or calibrated on."""


def bootstrap(
    champion_errors: NDArray[Any], challenger_errors: NDArray[Any], samples: int, seed: int
) -> PairedComparison:
    """MAEs of both, their difference, and its 95% percentile interval over `samples` row resamples."""
    champion_errors = np.abs(np.asarray(champion_errors, dtype=float))
    challenger_errors = np.abs(np.asarray(challenger_errors, dtype=float))
    diff = challenger_errors - champion_errors
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 500):  # bounded memory: 500 resamples of the rows at a time
        rows = rng.integers(0, len(diff), size=(min(500, samples - start), len(diff)))
        means[start : start + len(rows)] = diff[rows].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedComparison(
        rows=len(diff),
        champion_mae=float(champion_errors.mean()),
        challenger_mae=float(challenger_errors.mean()),
        diff=float(diff.mean()),
        low=float(low),
        high=float(high),
    )


def judge(comparison: PairedComparison, champion_version: str, min_improvement: float) -> GateDecision:
    """Promote only when the whole interval says the challenger is better by more than `min_improvement`."""
    c = comparison
    numbers = (
        f"MAE {c.challenger_mae:.3f} vs champion v{champion_version} {c.champion_mae:.3f} on the "
        f"{c.rows} most recent labelled rows, difference {c.diff:+.3f} (95% interval {c.low:+.3f} to {c.high:+.3f})"
    )
    if c.high < -min_improvement:
        return GateDecision(True, numbers, champion_version, None, KIND, c)
    bound = f"below −{min_improvement:g}" if min_improvement else "below 0"
    return GateDecision(False, f"{numbers}: not entirely {bound}", champion_version, None, KIND, c)


def gate_rows_for(
    client: MlflowClient,
    model_name: str,
    alias: str,
    predicted_at: pd.Series,
) -> tuple[str | None, NDArray[np.bool_]]:
    """The champion's version and which rows it was not fitted on (newer than its `ledger_fit_until`;
    all rows for a champion trained without the ledger). (None, no rows) without a champion."""
    champion = current_version(client, model_name, alias)
    if champion is None:
        return None, np.zeros(len(predicted_at), dtype=bool)
    fit_until = champion.tags.get(LEDGER_FIT_UNTIL_TAG)
    if not fit_until:
        return str(champion.version), np.ones(len(predicted_at), dtype=bool)
    boundary = pd.Timestamp(fit_until)
    boundary = boundary.tz_localize("UTC") if boundary.tzinfo is None else boundary.tz_convert("UTC")
    return str(champion.version), (predicted_at > boundary).to_numpy()


def decide_paired(
    model_name: str,
    champion_version: str,
    challenger: Any,
    X_gate: pd.DataFrame,
    y_gate: NDArray[Any],
    *,
    samples: int,
    min_improvement: float,
    seed: int,
) -> GateDecision | None:
    """The paired verdict; None when the champion cannot score these rows (the caller falls back to the
    test-window gate, which decides what an incompatible champion means). TrainerError if it cannot be loaded."""
    try:
        champion = mlflow.pyfunc.load_model(f"models:/{model_name}/{champion_version}")
    except Exception as exc:  # MLflow down, artifact missing: no comparison, so no promotion either
        raise TrainerError(
            f"cannot load champion v{champion_version} to compare with the new model: {exc}"
        ) from exc
    try:
        champion_predictions = np.asarray(champion.predict(X_gate), dtype=float)
    except Exception:
        log.warning("the champion cannot score the recent labelled rows", exc_info=True)
        return None
    challenger_predictions = np.asarray(challenger.predict(X_gate), dtype=float)
    comparison = bootstrap(y_gate - champion_predictions, y_gate - challenger_predictions, samples, seed)
    return judge(comparison, champion_version, min_improvement)
