"""The champion gate: the alias moves only to a model that beats the champion on the same test rows.

`compare` is the rule, a pure function; `score_champion` is the I/O (registry and model load) that
feeds it, and `decide` joins the two for the training run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from numpy.typing import NDArray

from trainer.errors import TrainerError
from trainer.evaluation import regression_metrics

log = logging.getLogger(__name__)

# What MLflow answers when the model or the alias does not exist yet (REST and SQL stores alike).
NO_CHAMPION_ERRORS = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
PREVIOUS_ALIAS = "previous"
"""The champion before the last promotion: where `trainer rollback` goes back to."""
ROLLBACK_CHECK_TAG = "rollback_check"
"""Set on a version once the automatic rollback check has judged it (kept | rolled_back)."""


@dataclass(frozen=True)
class PairedComparison:
    """Both models on the same recent labelled rows: their MAEs and a bootstrap interval of the difference."""

    rows: int
    champion_mae: float
    challenger_mae: float
    diff: float
    """MAE(challenger) − MAE(champion): below 0 is better."""
    low: float
    high: float
    """The 95% bootstrap interval of `diff` (paired: rows resampled, both errors of a row together)."""


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on one new model, with the champion it was compared against."""

    promoted: bool
    reason: str
    champion_version: str | None
    champion_rmse: float | None
    kind: str = "test-window"
    """`test-window` (RMSE on the dataset's newest rows) or `paired-recent-labels` (trainer/paired_gate.py)."""
    paired: PairedComparison | None = None

    def summary(self) -> dict[str, object]:
        """The `gate` object of the run's outcome JSON."""
        out: dict[str, object] = {"kind": self.kind, "champion_version": self.champion_version}
        if self.paired is not None:
            p = self.paired
            out |= {"rows": p.rows, "champion_mae": round(p.champion_mae, 4)}
            out |= {"challenger_mae": round(p.challenger_mae, 4), "diff": round(p.diff, 4)}
            out |= {"low": round(p.low, 4), "high": round(p.high, 4)}
        elif self.champion_rmse is not None:
            out["champion_rmse"] = round(self.champion_rmse, 4)
        return out

    def tags(self) -> dict[str, str]:
        """What the model version and the run are tagged with."""
        tags = {"gate": self.kind}
        if self.paired is not None:
            p = self.paired
            tags |= {"gate_rows": str(p.rows), "gate_champion_mae": f"{p.champion_mae:.4f}"}
            tags |= {"gate_challenger_mae": f"{p.challenger_mae:.4f}", "gate_mae_diff": f"{p.diff:.4f}"}
            tags |= {"gate_mae_diff_low": f"{p.low:.4f}", "gate_mae_diff_high": f"{p.high:.4f}"}
        return tags


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
        return ChampionScore(str(current.version), regression_metrics(y_test, predictions)["rmse"])
    except Exception as exc:
        log.warning("current champion cannot score the test data", exc_info=True)
        return ChampionScore(str(current.version), None, type(exc).__name__)


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


def current_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at; None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in NO_CHAMPION_ERRORS:
            return None
        raise TrainerError(f"cannot look up the {alias!r} alias of {model_name!r}: {exc}") from exc


def promote(
    client: MlflowClient, model_name: str, alias: str, version: str, *, now: datetime | None = None
) -> str | None:
    """Point the alias at a version (the predictors pick it up on their next poll); returns the version it
    left. That one keeps the `previous` alias, so `trainer rollback` and the automatic check can go back."""
    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise TrainerError(f"model {model_name!r} has no version {version}") from exc
    old = current_version(client, model_name, alias)
    old_version = str(old.version) if old is not None else None  # SQL stores answer an int
    version = str(version)
    if old_version == version:  # already there: nothing moves, no new promotion time
        client.set_model_version_tag(model_name, version, "promoted", "true")
        return old_version
    if old_version is not None:  # first, so an interruption never leaves a champion without its previous
        client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, old_version)
    client.set_registered_model_alias(model_name, alias, version)
    tags = {"promoted": "true", "promoted_at": iso_utc(now)}
    if old_version is not None:
        tags["previous_version"] = old_version
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    if ROLLBACK_CHECK_TAG in client.get_model_version(model_name, version).tags:
        client.delete_model_version_tag(model_name, version, ROLLBACK_CHECK_TAG)  # a new term, a new check
    return old_version


def iso_utc(now: datetime | None = None) -> str:
    """ISO 8601 in UTC, as the promoted_at tags are written and read."""
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat()
