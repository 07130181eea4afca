"""The champion gate: the alias moves only to a model that beats the champion on the same test rows.

`compare` is the rule, a pure function; `score_champion` is the I/O (registry and model load) that
feeds it, and `decide` joins the two for the training run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from numpy.typing import NDArray

from trainer.errors import TrainerError
from trainer.evaluation import regression_metrics

log = logging.getLogger(__name__)

# What MLflow answers when the model or the alias does not exist yet (REST and SQL stores alike).
NO_CHAMPION_ERRORS = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on one new model, with the champion it was compared against."""

    promoted: bool
    reason: str
    champion_version: str | None
    champion_rmse: float | None


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's result on the new model's test rows."""

    version: str
    rmse: float | None
    """None when the champion cannot score these rows (other features or types)."""
    error: str = ""
    """Why it could not score them (the exception's type name)."""


def compare(new_rmse: float, alias: str, champion: ChampionScore | None) -> GateDecision:
    """Promote when there is no champion, when it cannot score the test rows, or when the new RMSE is lower."""
    if champion is None:
        return GateDecision(True, f"no model holds alias {alias!r} yet", None, None)
    if champion.rmse is None:  # an incompatible champion cannot defend its title
        reason = f"champion v{champion.version} cannot score this test data ({champion.error})"
        return GateDecision(True, reason, champion.version, None)
    if new_rmse < champion.rmse:
        reason = f"test RMSE {new_rmse:.3f} beats champion v{champion.version} ({champion.rmse:.3f})"
        return GateDecision(True, reason, champion.version, champion.rmse)
    reason = f"test RMSE {new_rmse:.3f} does not beat champion v{champion.version} ({champion.rmse:.3f})"
    return GateDecision(False, reason, champion.version, champion.rmse)


def score_champion(
    client: MlflowClient, model_name: str, alias: str, X_test: pd.DataFrame, y_test: NDArray[Any]
) -> ChampionScore | None:
    """The champion's RMSE on the test rows; None without a champion; TrainerError if it cannot be loaded."""
    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in NO_CHAMPION_ERRORS:
            return None
        # A 5xx or an auth error says nothing about the champion: promoting blindly would skip the gate.
        raise TrainerError(f"cannot look up the {alias!r} alias of {model_name!r}: {exc}") from exc
    try:
        # The version just resolved, not the alias again: the comparison is with the model named above.
        champion = mlflow.pyfunc.load_model(f"models:/{model_name}/{current.version}")
    except Exception as exc:  # MLflow down, artifact missing: no comparison, so no promotion either
        raise TrainerError(
            f"cannot load champion v{current.version} to compare with the new model: {exc}"
        ) from exc
    try:
        predictions = np.asarray(champion.predict(X_test), dtype=float)
        return ChampionScore(current.version, regression_metrics(y_test, predictions)["rmse"])
    except Exception as exc:
        log.warning("current champion cannot score the test data", exc_info=True)
        return ChampionScore(current.version, None, type(exc).__name__)


def decide(
    client: MlflowClient,
    model_name: str,
    alias: str,
    new_rmse: float,
    X_test: pd.DataFrame,
    y_test: NDArray[Any],
) -> GateDecision:
    """Compare with the current champion on the same test rows; no champion means promote."""
    return compare(new_rmse, alias, score_champion(client, model_name, alias, X_test, y_test))


def promote(client: MlflowClient, model_name: str, alias: str, version: str) -> None:
    """Point the alias at a version; the predictors pick it up on their next poll."""
    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise TrainerError(f"model {model_name!r} has no version {version}") from exc
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promoted", "true")
