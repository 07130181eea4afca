"""The `ensemble` candidate: the plain mean of the other candidates' predictions.

A scikit-learn `VotingRegressor` with equal weights, so the registry pickles it by reference and a
predictor loads it with scikit-learn alone (no trainer code, nothing pickled by value). Its members are
the other configured candidates; each still takes the raw feature frame, so the ensemble does too.
"""

from __future__ import annotations

from collections.abc import Mapping

from sklearn.ensemble import VotingRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch


def unfitted(members: Mapping[str, Pipeline]) -> VotingRegressor:
    """`fit` clones and fits every member on the same rows (the refit of a winning ensemble)."""
    return VotingRegressor(list(members.items()))


def of_fitted(members: Mapping[str, Pipeline]) -> VotingRegressor:
    """The ensemble of members already fitted on the same rows, without fitting them again.

    VotingRegressor has no "prefit" option, so this sets the fitted attributes its `fit` would set
    (tests compare them with a real `fit`, so a scikit-learn upgrade that adds one fails there).
    """
    ensemble = unfitted(members)
    ensemble.estimators_ = list(members.values())
    ensemble.named_estimators_ = Bunch(**members)
    first = next(iter(members.values()))
    if hasattr(first, "feature_names_in_"):
        ensemble.feature_names_in_ = first.feature_names_in_
    return ensemble
