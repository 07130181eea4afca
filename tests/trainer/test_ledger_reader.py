"""The trainer's read-only view of the predictions ledger (trainer.ledger), on the schema the predictor's
own migrations create and on rows written by the predictor's own store: an SQLite file, and a database
of its own on the session's real PostgreSQL.

Every expected value is recomputed with pandas/numpy from the records the test wrote, not from the
reader's SQL.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from predictor.ledger.store import Label, LedgerStore, create_ledger_engine, migrate
from scripts import local_stack as stack
from trainer.ledger import (
    LedgerUnavailable,
    connect,
    describe,
    labelled_rows,
    normalise_url,
    version_mae,
)

MODEL = "ledger-reader"
OTHER_MODEL = "ledger-reader-other"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def prediction(
    pid: str,
    *,
    at: datetime,
    value: float,
    version: str = "1",
    model_name: str = MODEL,
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A predictions row as the predictor writes it (id "<request id>:<row>", UTC time)."""
    return {
        "id": pid,
        "request_id": pid.split(":")[0],
        "model_name": model_name,
        "model_version": version,
        "predicted_at": at.astimezone(UTC),
        "features": features if features is not None else {"lead_time": 1, "country": "prt"},
        "prediction": value,
    }


@dataclass
class Ledger:
    """A ledger database migrated and filled by the predictor's own code (predictor.ledger), and what was
    written, as plain records for the pandas cross-checks."""

    url: str
    predictions: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = create_ledger_engine(self.url)
        migrate(self.engine)
        self.store = LedgerStore(self.engine)

    def predict(self, *rows: dict[str, Any]) -> None:
        self.store.insert_predictions(list(rows))
        self.predictions.extend(rows)

    def label(self, pid: str, actual: float, *, received_at: datetime) -> None:
        """One label, as `POST /v1/feedback` stores it (last write wins, received_at = when it came)."""
        self.store.store_labels([Label(pid, actual)], now=received_at)
        self.labels[pid] = {"id": pid, "actual": actual, "received_at": received_at.astimezone(UTC)}

    def frame(self) -> pd.DataFrame:
        """Every prediction joined with its label (NaN/NaT without one)."""
        joined = pd.DataFrame(self.predictions).merge(
            pd.DataFrame(list(self.labels.values()), columns=["id", "actual", "received_at"]),
            on="id",
            how="left",
        )
        joined["predicted_at"] = pd.to_datetime(joined["predicted_at"], utc=True)
        joined["received_at"] = pd.to_datetime(joined["received_at"], utc=True)
        return joined

    def close(self) -> None:
        self.engine.dispose()


def empty_sqlite(path: Path) -> str:
    sqlite3.connect(path).close()  # an empty database file, as a fresh volume would hold
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Empty databases (no tables) of one kind: SQLite files, or databases of their own on the real
    PostgreSQL."""
    count = iter(range(100))

    def make() -> str:
        if request.param == "sqlite":
            return empty_sqlite(tmp_path / f"ledger-{next(count)}.db")
        server: stack.PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database()

    return make


@pytest.fixture
def make_ledger(new_database: Callable[[], str]) -> Iterator[Callable[[], Ledger]]:
    ledgers: list[Ledger] = []

    def make() -> Ledger:
        ledgers.append(Ledger(new_database()))
        return ledgers[-1]

    yield make
    for ledger in ledgers:
        ledger.close()


def standard_rows(seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, tuple[float, datetime]]]:
    """Predictions of MODEL (versions 1 and 2) and OTHER_MODEL at the same times, some unlabelled, two
    of MODEL's at the same instant (ordered by id), and labels that arrived at different times."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    labels: dict[str, tuple[float, datetime]] = {}
    for i in range(24):
        at = T0 + timedelta(minutes=5 * i)
        version = "1" if i < 14 else "2"
        features = {"lead_time": int(rng.integers(0, 300)), "country": str(rng.choice(["prt", "gbr"]))}
        for model_name, pid in ((MODEL, f"r{i:02d}:0"), (OTHER_MODEL, f"o{i:02d}:0")):
            actual = float(rng.uniform(50, 200))
            value = actual + float(rng.normal(0, 15))
            rows.append(
                prediction(pid, at=at, value=value, version=version, model_name=model_name, features=features)
            )
            if i % 5 != 3:  # every fifth prediction is still waiting for its label
                labels[pid] = (actual, at + timedelta(minutes=int(rng.integers(1, 180))))
    tie = T0 + timedelta(minutes=32)  # same instant: the id decides
    for pid in ("tie-b:0", "tie-a:0"):
        rows.append(prediction(pid, at=tie, value=100.0, features={"lead_time": 7, "country": "esp"}))
        labels[pid] = (110.0 if pid == "tie-a:0" else 90.0, tie + timedelta(minutes=1))
    return rows, labels


def fill(ledger: Ledger, seed: int = 0, order_seed: int = 1) -> Ledger:
    """The standard rows, written in a shuffled order (the reader must order them itself)."""
    rows, labels = standard_rows(seed)
    order = np.random.default_rng(order_seed).permutation(len(rows))
    ledger.predict(*[rows[i] for i in order])
    for pid in np.random.default_rng(order_seed + 1).permutation(sorted(labels)):
        actual, received_at = labels[str(pid)]
        ledger.label(str(pid), actual, received_at=received_at)
    return ledger


def expected_labelled(ledger: Ledger, model_name: str, since: datetime) -> pd.DataFrame:
    frame = ledger.frame()
    keep = (frame["model_name"] == model_name) & (frame["predicted_at"] >= since) & frame["actual"].notna()
    return frame[keep].sort_values(["predicted_at", "id"]).reset_index(drop=True)


def iso(value: Any) -> str:
    return pd.Timestamp(value).tz_convert(UTC).isoformat()


# ---------------------------------------------------------------- labelled_rows


def test_labelled_rows_are_the_models_labelled_predictions_in_time_order(
    make_ledger: Callable[[], Ledger],
) -> None:
    ledger = fill(make_ledger())
    rows = labelled_rows(ledger.url, MODEL, T0 - timedelta(days=1))
    expected = expected_labelled(ledger, MODEL, T0 - timedelta(days=1))

    assert len(rows) == len(expected) == 21  # 24 + 2 ties - 5 unlabelled
    assert rows.id == expected["id"].tolist()
    assert rows.id.index("tie-a:0") + 1 == rows.id.index("tie-b:0")
    assert not any(pid.startswith("o") for pid in rows.id)  # the other model's rows stay out
    assert rows.model_version == expected["model_version"].tolist()
    np.testing.assert_array_equal(rows.actual, expected["actual"].to_numpy(dtype=float))
    np.testing.assert_array_equal(rows.prediction, expected["prediction"].to_numpy(dtype=float))
    assert str(rows.predicted_at.dtype) == "datetime64[ns, UTC]"
    assert rows.predicted_at.tolist() == expected["predicted_at"].tolist()
    pd.testing.assert_frame_equal(
        rows.features[["lead_time", "country"]],
        pd.DataFrame(expected["features"].tolist())[["lead_time", "country"]],
    )
    assert rows.time_range() == (
        iso(expected["predicted_at"].iloc[0]),
        iso(expected["predicted_at"].iloc[-1]),
    )


def test_since_keeps_predictions_made_at_or_after_it(make_ledger: Callable[[], Ledger]) -> None:
    ledger = fill(make_ledger())
    since = T0 + timedelta(minutes=50)  # exactly prediction r10's time: it is kept
    rows = labelled_rows(ledger.url, MODEL, since)
    assert rows.id == expected_labelled(ledger, MODEL, since)["id"].tolist()
    assert rows.id[0] == "r10:0" and "tie-a:0" not in rows.id
    assert rows.time_range()[0] == since.isoformat()
    # An aware `since` in another zone is the same instant.
    assert labelled_rows(ledger.url, MODEL, since.astimezone(timezone(timedelta(hours=9)))).id == rows.id


def test_a_model_without_labelled_rows_gives_an_empty_set(make_ledger: Callable[[], Ledger]) -> None:
    ledger = fill(make_ledger())
    rows = labelled_rows(ledger.url, "no-such-model", T0 - timedelta(days=1))
    assert len(rows) == 0 and rows.features.empty
    assert rows.time_range() == (None, None)
    assert rows.digest() == hashlib.sha256().hexdigest()


def test_take_keeps_the_order_and_every_column(make_ledger: Callable[[], Ledger]) -> None:
    rows = labelled_rows(fill(make_ledger()).url, MODEL, T0 - timedelta(days=1))
    newest = rows.take(slice(-5, None))
    assert newest.id == rows.id[-5:] and newest.model_version == rows.model_version[-5:]
    np.testing.assert_array_equal(newest.actual, rows.actual[-5:])
    assert newest.predicted_at.tolist() == rows.predicted_at.tolist()[-5:]
    assert newest.features.to_dict("records") == rows.features.iloc[-5:].to_dict("records")
    picked = rows.take(np.array([4, 0]))
    assert picked.id == [rows.id[4], rows.id[0]] and picked.prediction.tolist() == [
        rows.prediction[4],
        rows.prediction[0],
    ]


def test_digest_is_stable_and_follows_the_labels(make_ledger: Callable[[], Ledger]) -> None:
    ledger = fill(make_ledger())
    since = T0 - timedelta(days=1)
    rows = labelled_rows(ledger.url, MODEL, since)
    manual = hashlib.sha256(
        "".join(f"{pid}\t{float(a)!r}\n" for pid, a in zip(rows.id, rows.actual, strict=True)).encode()
    ).hexdigest()
    assert rows.digest() == manual == labelled_rows(ledger.url, MODEL, since).digest()
    # The same rows written in another order, to another database: the same digest.
    assert labelled_rows(fill(make_ledger(), order_seed=7).url, MODEL, since).digest() == rows.digest()
    assert rows.take(slice(1, None)).digest() != rows.digest()

    ledger.label("r05:0", ledger.labels["r05:0"]["actual"] + 0.5, received_at=T0 + timedelta(days=1))
    corrected = labelled_rows(ledger.url, MODEL, since)
    assert corrected.id == rows.id and corrected.digest() != rows.digest()
    ledger.label("r03:0", 120.0, received_at=T0 + timedelta(days=1))  # a late label: one more row
    assert len(labelled_rows(ledger.url, MODEL, since)) == len(rows) + 1


# ---------------------------------------------------------------- version_mae


def test_version_mae_matches_numpy_on_the_same_rows(make_ledger: Callable[[], Ledger]) -> None:
    ledger = fill(make_ledger())
    frame = ledger.frame()
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=65)  # r13 at 65 min: outside
    labelled_before = T0 + timedelta(minutes=100)

    def numpy_mae(version: str, labelled_by: datetime) -> tuple[float | None, int]:
        keep = (
            (frame["model_name"] == MODEL)
            & (frame["model_version"] == version)
            & (frame["predicted_at"] >= start)
            & (frame["predicted_at"] < end)
            & (frame["received_at"] <= labelled_by)
        )
        errors = np.abs(frame.loc[keep, "prediction"].to_numpy() - frame.loc[keep, "actual"].to_numpy())
        return (float(np.mean(errors)) if len(errors) else None), int(keep.sum())

    mae, count = version_mae(ledger.url, MODEL, "1", start, end, labelled_before)
    expected_mae, expected_count = numpy_mae("1", labelled_before)
    all_labelled = numpy_mae("1", T0 + timedelta(days=7))[1]
    assert 0 < expected_count < all_labelled  # some labels arrived after `labelled_before`: left out
    assert count == expected_count
    assert mae == pytest.approx(expected_mae, rel=1e-12)

    later = version_mae(ledger.url, MODEL, "1", start, end, T0 + timedelta(days=7))
    assert later[1] == all_labelled
    assert later[0] == pytest.approx(numpy_mae("1", T0 + timedelta(days=7))[0], rel=1e-12)
    assert version_mae(ledger.url, MODEL, "2", start, end, labelled_before) == (None, 0)
    assert version_mae(ledger.url, MODEL, "1", start, end, start) == (None, 0)  # nothing labelled yet


# ---------------------------------------------------------------- read-only, and what can go wrong


def test_connect_is_read_only(make_ledger: Callable[[], Ledger]) -> None:
    ledger = fill(make_ledger())
    before = len(labelled_rows(ledger.url, MODEL, T0 - timedelta(days=1)))
    engine = connect(ledger.url)
    try:
        with pytest.raises(sa.exc.DBAPIError, match=r"(?i)read-?only"), engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM labels"))
    finally:
        engine.dispose()
    assert len(labelled_rows(ledger.url, MODEL, T0 - timedelta(days=1))) == before


def test_missing_tables_say_how_to_create_them(new_database: Callable[[], str]) -> None:
    url = new_database()
    with pytest.raises(LedgerUnavailable) as error:
        labelled_rows(url, MODEL, T0)
    message = str(error.value)
    assert "has no predictions or labels table" in message
    assert "a predictor with PREDICTOR_LEDGER_DATABASE_URL creates them when it starts" in message
    assert describe(url) in message
    with pytest.raises(LedgerUnavailable, match="has no predictions or labels table"):
        version_mae(url, MODEL, "1", T0, T0, T0)


def test_a_missing_sqlite_file_is_an_error_not_a_new_ledger(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "ledger.db"
    with pytest.raises(LedgerUnavailable, match="cannot read the ledger database sqlite:///"):
        labelled_rows(f"sqlite:///{path}", MODEL, T0)
    assert not path.exists()


def test_unreachable_postgresql_is_unavailable_without_the_password() -> None:
    port = stack.free_port()
    url = f"postgresql://mlops:pw-never-shown@127.0.0.1:{port}/ledger"
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable) as error:
        version_mae(url, MODEL, "1", T0, T0, T0)
    message = str(error.value)
    assert message.startswith(
        f"cannot read the ledger database postgresql+psycopg://mlops:***@127.0.0.1:{port}/ledger: "
    )
    assert "pw-never-shown" not in message and "\n" not in message
    assert time.monotonic() - started < 20


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("postgres://u:p@db:5432/ledger", "postgresql+psycopg://u:p@db:5432/ledger"),
        ("postgresql://u:p@db/ledger", "postgresql+psycopg://u:p@db/ledger"),
        ("postgresql+psycopg2://u:p@db/ledger", "postgresql+psycopg://u:p@db/ledger"),
        ("sqlite:////data/ledger.db", "sqlite:////data/ledger.db"),
    ],
)
def test_normalise_url_puts_postgresql_on_psycopg_3(url: str, normalised: str) -> None:
    assert normalise_url(url) == normalised


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secret@db/ledger", "unsupported database 'mysql'"),
        ("sqlite://", "an SQLite ledger needs a file"),
        ("sqlite:///:memory:", "an SQLite ledger needs a file"),
        ("sqlite+aiosqlite:///l.db", "unsupported SQLite driver"),
        ("not a url secret", "not a database URL"),
    ],
)
def test_unsupported_urls_are_refused_without_repeating_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        normalise_url(url)
    assert "secret" not in str(error.value)


def test_describe_hides_the_password() -> None:
    assert (
        describe("postgres://mlops:hunter2@db:5432/ledger") == "postgresql+psycopg://mlops:***@db:5432/ledger"
    )
    assert describe("sqlite:////data/ledger.db") == "sqlite:////data/ledger.db"
