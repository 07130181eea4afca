"""A small synthetic table with the hotel_rates columns, for fast tests of the trainer's own functions.

Sixty rows over two years: numbers, categories with missing values, a price that depends on both, so
every candidate has something to fit. Nothing is read from the real dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer.config import Settings
from trainer.data import Features, prepare


def tiny_hotel_rates(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Raw rows as `load_dataset` returns them (the target, the arrival date, ids and features)."""
    rng = np.random.default_rng(seed)
    dates = pd.Timestamp("2016-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 730, n)), unit="D")
    country = rng.choice(np.array(["prt", "gbr", "esp", "fra"], dtype=object), n)
    country[::13] = None
    frame = pd.DataFrame(
        {
            "rownames": np.arange(1, n + 1),
            "lead_time": rng.integers(0, 300, n),
            "stays_in_weekend_nights": rng.integers(0, 3, n),
            "adults": rng.integers(1, 4, n),
            "is_repeated_guest": rng.integers(0, 2, n).astype(bool),
            "historical_adr": rng.uniform(60, 160, n),
            "country": country,
            "market_segment": rng.choice(["online_travel_agent", "direct", "groups"], n),
            "arrival_date": dates.strftime("%Y-%m-%d"),
            "arrival_date_num": dates.year + dates.dayofyear / 366,
        }
    )
    summer = dates.month.isin([6, 7, 8]).astype(float)
    frame["avg_price_per_room"] = (
        frame["historical_adr"] + 30 * summer + 10 * frame["adults"] + rng.normal(0, 5, n)
    )
    return frame


def tiny_features(n: int = 60, seed: int = 0) -> Features:
    """The raw rows through the trainer's own `prepare`, with the default settings' column roles."""
    s = Settings()
    return prepare(
        tiny_hotel_rates(n, seed),
        target=s.target,
        date_column=s.date_column,
        drop_columns=s.drop_columns,
        min_rows=10,
    )
