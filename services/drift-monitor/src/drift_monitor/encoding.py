"""Turn feature rows into the numeric matrix the detectors take.

Numeric features stay numbers. A categorical feature becomes the index of its value in the trainer's
sorted category list (feature_spec.json), so the reference and the live rows share one code book.
A value the trainer never saw, or a missing one, gets one extra code (`len(categories)`): new
countries, agents or companies are pooled in an "other" bucket and counted, instead of breaking the
chi-squared test or vanishing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from drift_monitor.reference import FeatureSpec


def encode(frame: pd.DataFrame, spec: FeatureSpec) -> NDArray[Any]:
    """A float matrix, one column per `spec.features` entry, in that order."""
    columns = []
    for feature in spec.features:
        values = frame[feature] if feature in frame.columns else pd.Series(np.nan, index=frame.index)
        if feature in spec.categorical:
            columns.append(encode_categories(values, spec.categorical[feature]))
        else:
            columns.append(pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64"))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def encode_categories(values: pd.Series, categories: list[str]) -> NDArray[Any]:
    """Index in `categories`; unseen or missing values → `len(categories)` (the "other" code)."""
    codes = {category: code for code, category in enumerate(categories)}
    other = len(categories)
    return np.array([codes.get(str(v), other) if v is not None else other for v in values], dtype="float64")


def numeric_complete_rows(matrix: NDArray[Any], spec: FeatureSpec) -> NDArray[Any]:
    """Boolean mask of rows without a missing numeric value (categoricals already have a code for missing)."""
    numeric = [i for i, f in enumerate(spec.features) if f not in spec.categorical]
    if not numeric:
        return np.ones(len(matrix), dtype=bool)
    complete: NDArray[np.bool_] = ~np.isnan(matrix[:, numeric]).any(axis=1)
    return complete
