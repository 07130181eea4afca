"""What the drift monitor compares live traffic with: a sample of the rows the model was fitted on,
the model's predictions for them, and which features are categorical with which categories."""

from __future__ import annotations

import pandas as pd
from sklearn.pipeline import Pipeline

from trainer.data import Features

REFERENCE_FILE = "reference.parquet"
FEATURE_SPEC_FILE = "feature_spec.json"
PREDICTION_COLUMN = "prediction"


def reference_sample(model: Pipeline, X_fit: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    sample = X_fit.sample(n=min(rows, len(X_fit)), random_state=seed).reset_index(drop=True)
    return sample.assign(**{PREDICTION_COLUMN: model.predict(sample)})


def feature_spec(
    features: Features, X_fit: pd.DataFrame, target: str, boundaries: dict[str, str]
) -> dict[str, object]:
    return {
        "target": target,
        "features": list(features.X.columns),
        "numeric": features.numeric,
        "categorical": {c: sorted(str(v) for v in X_fit[c].dropna().unique()) for c in features.categorical},
        "split": boundaries,
    }
