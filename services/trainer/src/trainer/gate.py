"""The champion gate: the alias moves only to a model that beats the champion on the same test rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trainer.errors import TrainerError
from trainer.evaluation import regression_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on one new model, with the champion it was compared against."""

    promoted: bool
    reason: str
    champion_version: str | None
    champion_rmse: float | None


def decide(
    client: MlflowClient,
    model_name: str,
    alias: str,
    new_rmse: float,
    X_test: pd.DataFrame,
    y_test: np.ndarray,
) -> GateDecision:
    """Compare with the current champion on the same test rows; no champion means promote."""
    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return GateDecision(True, f"no model holds alias {alias!r} yet", None, None)
    try:
        champion = mlflow.pyfunc.load_model(f"models:/{model_name}@{alias}")
    except Exception as exc:  # MLflow down, artifact missing: no comparison, so no promotion either
        raise TrainerError(
            f"cannot load champion v{current.version} to compare with the new model: {exc}"
        ) from exc
    try:
        champion_rmse = regression_metrics(y_test, np.asarray(champion.predict(X_test), dtype=float))["rmse"]
    except Exception as exc:  # other features or types: an incompatible champion cannot defend its title
        log.warning("current champion cannot score the test data", exc_info=True)
        reason = f"champion v{current.version} cannot score this test data ({type(exc).__name__})"
        return GateDecision(True, reason, current.version, None)
    if new_rmse < champion_rmse:
        reason = f"test RMSE {new_rmse:.3f} beats champion v{current.version} ({champion_rmse:.3f})"
        return GateDecision(True, reason, current.version, champion_rmse)
    reason = f"test RMSE {new_rmse:.3f} does not beat champion v{current.version} ({champion_rmse:.3f})"
    return GateDecision(False, reason, current.version, champion_rmse)


def promote(client: MlflowClient, model_name: str, alias: str, version: str) -> None:
    """Point the alias at a version; the predictors pick it up on their next poll."""
    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise TrainerError(f"model {model_name!r} has no version {version}") from exc
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promoted", "true")
