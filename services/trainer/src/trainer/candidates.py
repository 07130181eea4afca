"""Candidate pipelines: preprocessing and estimator in one scikit-learn Pipeline, so the logged model
takes the raw feature table and nothing has to be re-implemented at serving time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

# Categories seen fewer times than this are pooled into one "infrequent" bucket, and categories never
# seen in training map to it too: new agents and countries appear in live traffic all the time.
MIN_CATEGORY_COUNT = 10


def _one_hot(numeric: list[str], categorical: list[str], *, scale: bool) -> ColumnTransformer:
    numeric_steps = [SimpleImputer(strategy="median")] + ([StandardScaler()] if scale else [])
    return ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_COUNT),
                ),
                categorical,
            ),
        ]
    )


def ridge(numeric: list[str], categorical: list[str], seed: int) -> Pipeline:
    return Pipeline([("preprocess", _one_hot(numeric, categorical, scale=True)), ("model", Ridge(alpha=1.0))])


def random_forest(numeric: list[str], categorical: list[str], seed: int) -> Pipeline:
    forest = RandomForestRegressor(
        n_estimators=100, min_samples_leaf=2, max_features=0.5, n_jobs=-1, random_state=seed
    )
    return Pipeline([("preprocess", _one_hot(numeric, categorical, scale=False)), ("model", forest)])


def hist_gradient_boosting(numeric: list[str], categorical: list[str], seed: int) -> Pipeline:
    # Native categorical splits: categories become ordinal codes (rare and unseen ones -> missing),
    # listed first so the estimator can be told which columns they are.
    encode = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    min_frequency=MIN_CATEGORY_COUNT,
                    max_categories=200,
                ),
                categorical,
            ),
            ("numeric", "passthrough", numeric),
        ]
    )
    booster = HistGradientBoostingRegressor(
        max_iter=300,
        learning_rate=0.08,
        max_leaf_nodes=31,
        min_samples_leaf=20,
        l2_regularization=1.0,
        categorical_features=list(range(len(categorical))),
        early_stopping=False,
        random_state=seed,
    )
    return Pipeline([("preprocess", encode), ("model", booster)])


CANDIDATES: dict[str, Callable[[list[str], list[str], int], Pipeline]] = {
    "ridge": ridge,
    "random_forest": random_forest,
    "hist_gradient_boosting": hist_gradient_boosting,
}
