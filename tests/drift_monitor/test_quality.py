"""The quality check's numbers, on a real ledger (an SQLite file and the real PostgreSQL) written by the
predictor's own migrations and store: equal to pandas on the same joined rows, the label delay and the
window's edges, unmatched labels, versions apart, the last label's time, and the version's yardstick
from the real MLflow registry."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from drift_monitor import ledger
from drift_monitor.config import Settings
from drift_monitor.errors import LedgerUnavailable
from drift_monitor.quality import check_quality, read_ledger
from scripts import local_stack as stack
from tests.drift_monitor.conftest import (
    QUALITY_MODEL,
    REFERENCE_MAE,
    LedgerRows,
    QualityModel,
    prediction,
)

NOW = 1_790_000_000.0  # a fixed "now" (2026-09): every time below is relative to it
HOUR, DAY = 3600.0, 86400.0


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def expected_errors(rows: LedgerRows, start: float, end: float) -> pd.DataFrame:
    """The same numbers computed by pandas from the rows the test wrote: window, join on id, per version."""
    predictions = pd.DataFrame(rows.predictions)
    predictions["at"] = predictions["predicted_at"].map(lambda t: t.timestamp())
    in_window = predictions[
        (predictions["model_name"] == QUALITY_MODEL)
        & (predictions["at"] > start)
        & (predictions["at"] <= end)
    ]
    joined = in_window.merge(pd.DataFrame(rows.labels), on="id", how="inner")
    error = joined["prediction"] - joined["actual"]
    per_version = (
        joined.assign(abs_error=error.abs(), squared=error**2, error=error)
        .groupby("model_version")
        .agg(
            labelled_rows=("id", "size"),
            mae=("abs_error", "mean"),
            mse=("squared", "mean"),
            bias=("error", "mean"),
        )
    )
    per_version["rmse"] = np.sqrt(per_version.pop("mse"))
    per_version["ledger_rows"] = in_window.groupby("model_version").size()
    return per_version


def random_ledger(rows: LedgerRows, seed: int) -> None:
    """Two versions with different errors across ten days, labels for most rows (some re-sent with a
    new value), labels matching nothing, and another model's rows."""
    rng = np.random.default_rng(seed)
    batch = []
    for i in range(600):
        version = "1" if i % 3 else "2"
        at = NOW - rng.uniform(0, 10 * DAY)
        value = float(rng.normal(100, 30))
        batch.append(prediction(f"req-{i}:0", version=version, at=round(at, 3), value=value))
    batch += [
        prediction(f"other-{i}:0", version="1", at=NOW - HOUR * (i + 2), value=1000.0, model_name="other")
        for i in range(20)
    ]
    rows.predict(*batch)
    for i, row in enumerate(batch):
        if rng.random() < 0.7:  # labelled; version 2 predicts too low by 15 on average
            shift = 15.0 if row["model_version"] == "2" else 0.0
            actual = row["prediction"] + shift + float(rng.normal(0, 10))
            rows.label(row["id"], actual, received_at=NOW - rng.uniform(0, DAY))
            if i % 50 == 0:
                rows.label(row["id"], actual + 40, received_at=NOW - 60)  # re-sent: the last value counts
    for i in range(30):
        rows.label(f"never-predicted-{i}:0", 0.0, received_at=NOW - 30)


def read(rows: LedgerRows, start: float, end: float) -> dict[str, ledger.VersionErrors]:
    errors, _ = read_ledger(rows.url, QUALITY_MODEL, start, end)
    return {e.model_version: e for e in errors}


def test_the_numbers_are_pandas_on_the_same_joined_rows(ledger_rows: LedgerRows) -> None:
    random_ledger(ledger_rows, seed=7)
    start, end = NOW - 7 * DAY - 2 * HOUR, NOW - 2 * HOUR

    got = read(ledger_rows, start, end)
    want = expected_errors(ledger_rows, start, end)

    assert sorted(got) == sorted(want.index) == ["1", "2"]
    for version, row in want.iterrows():
        e = got[version]
        assert (e.ledger_rows, e.labelled_rows) == (row["ledger_rows"], row["labelled_rows"])
        assert e.mae == pytest.approx(row["mae"], rel=1e-9)
        assert e.rmse == pytest.approx(row["rmse"], rel=1e-9)
        assert e.bias == pytest.approx(row["bias"], rel=1e-9, abs=1e-9)
    # The versions differ the way the data was made: version 2 predicts ~15 too low.
    assert got["2"].bias == pytest.approx(-15, abs=3) and abs(got["1"].bias or 0) < 3


def test_the_window_is_open_at_its_start_and_closed_at_its_end(ledger_rows: LedgerRows) -> None:
    start, end = NOW - DAY, NOW - HOUR
    times = {
        "at-start": start,  # out: (start, end]
        "after-start": start + 1,
        "at-end": end,  # in: matured exactly now
        "after-end": end + 1,  # out: its label may still be on its way
    }
    ledger_rows.predict(
        *(prediction(f"{name}:0", version="1", at=t, value=100.0) for name, t in times.items())
    )
    for name in times:
        ledger_rows.label(f"{name}:0", 90.0, received_at=NOW)

    [errors] = read(ledger_rows, start, end).values()

    assert (errors.ledger_rows, errors.labelled_rows, errors.mae, errors.bias) == (2, 2, 10.0, 10.0)


def test_unmatched_labels_and_other_models_are_ignored(ledger_rows: LedgerRows) -> None:
    ledger_rows.predict(
        prediction("a:0", version="1", at=NOW - 2 * HOUR, value=100.0),
        prediction("a:1", version="1", at=NOW - 2 * HOUR, value=100.0),
        prediction("b:0", version="1", at=NOW - 2 * HOUR, value=100.0, model_name="another-model"),
    )
    ledger_rows.label("a:0", 110.0, received_at=NOW)
    ledger_rows.label("b:0", 0.0, received_at=NOW)  # another model's row
    ledger_rows.label("nobody:0", 0.0, received_at=NOW)  # no prediction has this id

    [errors] = read(ledger_rows, NOW - DAY, NOW).values()

    assert errors == ledger.VersionErrors(
        "1", ledger_rows=2, labelled_rows=1, mae=10.0, rmse=10.0, bias=-10.0
    )


def test_a_version_without_labels_has_rows_and_no_errors(ledger_rows: LedgerRows) -> None:
    ledger_rows.predict(
        prediction("a:0", version="3", at=NOW - 2 * HOUR, value=100.0),
        prediction("b:0", version="4", at=NOW - 2 * HOUR, value=100.0),
    )
    ledger_rows.label("b:0", 97.0, received_at=NOW)

    got = read(ledger_rows, NOW - DAY, NOW)

    assert got["3"] == ledger.VersionErrors(
        "3", ledger_rows=1, labelled_rows=0, mae=None, rmse=None, bias=None
    )
    assert got["4"] == ledger.VersionErrors("4", ledger_rows=1, labelled_rows=1, mae=3.0, rmse=3.0, bias=3.0)


def test_the_last_label_time_falls_back_to_the_oldest_prediction(ledger_rows: LedgerRows) -> None:
    assert read_ledger(ledger_rows.url, QUALITY_MODEL, NOW - DAY, NOW)[1] is None  # empty ledger

    ledger_rows.predict(
        prediction("a:0", version="1", at=NOW - 5 * HOUR, value=1.0),
        prediction("b:0", version="1", at=NOW - 3 * HOUR, value=1.0),
    )
    assert read_ledger(ledger_rows.url, QUALITY_MODEL, NOW - DAY, NOW)[1] == ledger.LastLabel(
        utc(NOW - 5 * HOUR), "prediction"
    )

    ledger_rows.label("a:0", 1.0, received_at=NOW - 2 * HOUR)
    ledger_rows.label("zzz:0", 1.0, received_at=NOW - HOUR)  # any label says labels flow
    assert read_ledger(ledger_rows.url, QUALITY_MODEL, NOW - DAY, NOW)[1] == ledger.LastLabel(
        utc(NOW - HOUR), "label"
    )


def settings(url: str, tracking_uri: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "model_name": QUALITY_MODEL,
        "ledger_database_url": url,
        "mlflow_wait_seconds": 1,
        **overrides,
    }
    return Settings(**values)


def test_check_quality_applies_the_label_delay_and_the_versions_yardstick(
    ledger_rows: LedgerRows, quality_model: QualityModel
) -> None:
    delay, window = 6 * HOUR, 2 * DAY
    end = NOW - delay
    v, no_metric = quality_model.version, quality_model.version_without_metric
    ledger_rows.predict(
        prediction("young:0", version=v, at=end + 1, value=100.0),  # not matured: labels may still come
        prediction("matured:0", version=v, at=end, value=100.0),
        prediction("matured:1", version=v, at=end - window + 1, value=100.0),
        prediction("too-old:0", version=v, at=end - window, value=100.0),
        prediction("unknown:0", version=no_metric, at=end - HOUR, value=50.0),
        prediction("gone:0", version="999", at=end - HOUR, value=50.0),  # not in the registry
    )
    for pid, actual in (("young:0", 0.0), ("matured:0", 70.0), ("matured:1", 110.0), ("too-old:0", 0.0)):
        ledger_rows.label(pid, actual, received_at=NOW - 60)

    report = check_quality(
        settings(
            ledger_rows.url,
            quality_model.tracking_uri,
            label_delay_seconds=int(delay),
            quality_window_seconds=int(window),
            quality_min_labelled_rows=2,
            quality_max_mae_ratio=0.9,
        ),
        now=NOW,
    )

    assert (report.window_start, report.window_end) == (end - window, end)
    assert (report.last_label_at, report.last_label_source) == (NOW - 60, "label")
    got = {q.model_version: q for q in report.versions}
    assert list(got) == [v, no_metric, "999"]
    matured = got[v]
    assert (matured.ledger_rows, matured.labelled_rows) == (2, 2)
    assert (matured.mae, matured.bias) == (20.0, 10.0)
    assert matured.rmse == pytest.approx(np.sqrt((30**2 + 10**2) / 2))
    assert (matured.reference_mae, matured.reference_run_id) == (
        REFERENCE_MAE,
        quality_model.reference_run_id,
    )
    assert matured.mae_ratio == 1.0 and matured.enough_labels and matured.degraded is True  # 1.0 > 0.9
    assert got[no_metric].reference_mae is None and "has no reference_mae metric" in (
        got[no_metric].reference_missing or ""
    )
    assert got["999"].reference_missing == f"{QUALITY_MODEL} v999 is not in the MLflow registry"
    assert got[no_metric].degraded is None and got[no_metric].labelled_rows == 0


def test_too_few_labels_is_no_verdict(ledger_rows: LedgerRows, quality_model: QualityModel) -> None:
    ledger_rows.predict(prediction("a:0", version=quality_model.version, at=NOW - HOUR, value=500.0))
    ledger_rows.label("a:0", 0.0, received_at=NOW)

    report = check_quality(
        settings(ledger_rows.url, quality_model.tracking_uri, quality_min_labelled_rows=2), now=NOW
    )

    [q] = report.versions
    assert q.mae_ratio == 500.0 / REFERENCE_MAE and not q.enough_labels and q.degraded is None


def test_a_ledger_without_tables_says_who_creates_them(tmp_path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(
        LedgerUnavailable, match="no predictions or labels table: a predictor with PREDICTOR_LEDGER"
    ):
        read_ledger(f"sqlite:///{tmp_path / 'empty.db'}", QUALITY_MODEL, 0, NOW)


def test_a_missing_sqlite_file_is_an_error_not_a_new_ledger(tmp_path) -> None:
    with pytest.raises(LedgerUnavailable, match="unable to open database file"):
        read_ledger(f"sqlite:///{tmp_path / 'typo.db'}", QUALITY_MODEL, 0, NOW)
    assert not (tmp_path / "typo.db").exists()


def test_the_monitor_only_reads(postgres_server: stack.PostgresServer) -> None:
    import sqlalchemy as sa

    engine = ledger.connect(postgres_server.url)
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"), engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE not_allowed (id int)"))
    engine.dispose()


def test_a_database_that_is_down_is_one_clear_error_without_the_password(
    postgres_server: stack.PostgresServer,
) -> None:
    url = postgres_server.create_database()
    LedgerRows(url).close()  # migrated
    postgres_server.stop()
    try:
        with pytest.raises(LedgerUnavailable) as raised:
            read_ledger(url, QUALITY_MODEL, 0, NOW)
    finally:
        postgres_server.start()
    message = str(raised.value)
    assert message.startswith(
        f"cannot read the ledger database postgresql+psycopg://mlops:***@127.0.0.1:{postgres_server.port}/"
    )
    assert postgres_server.password not in message and "\n" not in message
    assert read_ledger(url, QUALITY_MODEL, 0, NOW) == ([], None)  # back: the same URL works again


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("postgresql://u:p@db:5432/ledger", "postgresql+psycopg://u:p@db:5432/ledger"),
        ("postgres://u:p@db/ledger", "postgresql+psycopg://u:p@db/ledger"),
        ("postgresql+psycopg://u:p@db/ledger", "postgresql+psycopg://u:p@db/ledger"),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
        ("sqlite:////abs/ledger.db", "sqlite:////abs/ledger.db"),
    ],
)
def test_database_urls_are_normalised_to_psycopg(given: str, normalised: str) -> None:
    assert ledger.normalise_url(given) == normalised


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("mysql://u:secret@db/ledger", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
        ("sqlite://", "needs a file"),
    ],
)
def test_unsupported_urls_are_refused_without_repeating_them(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        ledger.normalise_url(given)
    assert "secret" not in str(raised.value)


def test_an_empty_ledger_url_is_no_quality_check() -> None:
    """The chart renders an unset value as an empty string."""
    assert Settings(MLFLOW_TRACKING_URI="http://x", ledger_database_url="").ledger_database_url is None
    url = Settings(
        MLFLOW_TRACKING_URI="http://x", ledger_database_url="postgres://u:pw@db/l"
    ).ledger_database_url
    assert url is not None and url.get_secret_value() == "postgresql+psycopg://u:pw@db/l"
    assert "pw" not in repr(url)
