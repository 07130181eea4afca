"""Real hotel-booking rows to send to the predictor, by time window.

`normal` rows come from the window the champion was fitted on (train + validation), so they look like
the drift reference; `drift` rows come from the latest arrival months (the test window: summer 2017),
which the model never saw. The same trainer code that splits the data for training splits it here.

The closed loop splits the summer at its middle date: `summer_early` (2017-06-26 → 07-29) is what
production sees and labels before a retrain, `summer_late` (07-30 → 08-31) is later than anything a
retrain can be fitted on. Both are sent in arrival order, as bookings would come in, so the newest
labels in the ledger are also the latest stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import pandas as pd

from trainer.config import Settings
from trainer.data import Features, Split, load_dataset, prepare, time_split

MODES = ("normal", "drift", "validation", "summer_early", "summer_late")
IN_ARRIVAL_ORDER = ("summer_early", "summer_late")


@dataclass(frozen=True)
class Windows:
    normal: pd.DataFrame
    validation: pd.DataFrame
    drift: pd.DataFrame
    summer_early: pd.DataFrame
    summer_late: pd.DataFrame
    target: str

    def frame(self, mode: str) -> pd.DataFrame:
        if mode not in MODES:
            raise ValueError(f"traffic mode {mode!r}: choose from {', '.join(MODES)}")
        return getattr(self, mode)


@cache
def default_split() -> tuple[Features, Split]:
    """The default dataset prepared and split exactly as `trainer train` does with default settings."""
    s = Settings()
    features = prepare(
        load_dataset(s.dataset),
        target=s.target,
        date_column=s.date_column,
        drop_columns=s.drop_columns,
        min_rows=s.min_rows,
    )
    split = time_split(
        features.dates, validation_fraction=s.validation_fraction, test_fraction=s.test_fraction
    )
    return features, split


@cache
def hotel_windows() -> Windows:
    """Feature rows (plus the target column) of each window of the default dataset."""
    s = Settings()
    features, split = default_split()
    table = features.X.assign(**{s.target: features.y})
    fitted_on = sorted([*split.train, *split.validation])
    summer = features.dates.iloc[split.test].sort_values(kind="stable")
    middle = summer.iloc[len(summer) // 2]  # the first day of the later half
    return Windows(
        normal=table.iloc[fitted_on].reset_index(drop=True),
        validation=table.iloc[split.validation].reset_index(drop=True),
        drift=table.iloc[split.test].reset_index(drop=True),
        summer_early=table.loc[summer.index[summer < middle]].reset_index(drop=True),
        summer_late=table.loc[summer.index[summer >= middle]].reset_index(drop=True),
        target=s.target,
    )


def to_records(frame: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[dict]:
    """JSON-ready rows: NaN becomes null, numpy scalars become Python numbers."""
    rows = frame.drop(columns=[c for c in drop if c in frame.columns]).to_dict(orient="records")
    return [
        {
            k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
            for k, v in r.items()
        }
        for r in rows
    ]


def sample_records(mode: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """n feature rows (no target) of a window, drawn at random with a fixed seed; all of them if n is None."""
    return labelled_records(mode, n, seed)[0]


def labelled_records(mode: str, n: int | None = None, seed: int = 0) -> tuple[list[dict], list[float]]:
    """`sample_records` and the true price of each row (what a label feed sends back after the stay).

    The summer halves keep their arrival order (a sample of them too)."""
    w = hotel_windows()
    frame = w.frame(mode)
    n = len(frame) if n is None else n
    drawn = frame.sample(n=n, replace=n > len(frame), random_state=seed)
    if mode in IN_ARRIVAL_ORDER:
        drawn = drawn.sort_index(kind="stable")
    return to_records(drawn, drop=(w.target,)), drawn[w.target].astype(float).tolist()
