"""Read-only queries on the predictor's predictions ledger (docs/interfaces.md, "Predictions ledger").

The predictor owns that database (schema, migrations, writes); the trainer reads labelled predictions
from it to learn the recent regime and to judge the gate, and the rollback check reads per-version live
errors. Only the tables and columns named here are read, and the predictor is never imported (separate
images); the tests run these queries on the schema the predictor's migrations create.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Engine, make_url

from trainer.errors import TrainerError

SUPPORTED_BACKENDS = ("postgresql", "sqlite")

# Lightweight table clauses: only the columns read, typed so timestamps come back as datetimes.
predictions = sa.table(
    "predictions",
    sa.column("id", sa.String()),
    sa.column("model_name", sa.String()),
    sa.column("model_version", sa.String()),
    sa.column("predicted_at", sa.DateTime(timezone=True)),
    sa.column("features", sa.JSON()),
    sa.column("prediction", sa.Double()),
)
labels = sa.table(
    "labels",
    sa.column("id", sa.String()),
    sa.column("actual", sa.Double()),
    sa.column("received_at", sa.DateTime(timezone=True)),
)


class LedgerUnavailable(TrainerError):
    """The ledger database cannot be read (down, wrong URL, not created yet)."""


def normalise_url(url: str) -> str:
    """The URL on a supported driver: `postgresql://` and `postgres://` get psycopg 3 (`postgresql+psycopg://`).

    Raises ValueError without repeating the URL (it may hold a password).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # the parser's message may quote part of the password
        raise ValueError(
            "not a database URL (postgresql://user:password@host/db or sqlite:///path.db)"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"unsupported database {parsed.get_backend_name()!r}: use postgresql:// or sqlite:///"
        )
    if parsed.get_backend_name() == "postgresql":  # whatever driver was named, the image ships psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise ValueError(f"unsupported SQLite driver {parsed.drivername!r}: use sqlite:///path.db")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("an SQLite ledger needs a file: sqlite:///path.db")
    return parsed.render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL without its password, for log lines and errors."""
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def connect(url: str, *, timeout_seconds: float = 30) -> Engine:
    """A read-only engine whose waits are bounded: a dead database fails the run in seconds.

    PostgreSQL sessions are read-only (`default_transaction_read_only`); an SQLite file is opened
    read-only, so a mistyped path is an error instead of a new, empty ledger.
    """
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").resolve()

        def read_only() -> sqlite3.Connection:
            return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout_seconds)

        return sa.create_engine("sqlite://", creator=read_only, poolclass=sa.pool.NullPool)
    return sa.create_engine(
        parsed,
        poolclass=sa.pool.NullPool,  # a few queries per run: no pool to keep
        connect_args={
            "connect_timeout": max(1, round(timeout_seconds)),
            "options": f"-c default_transaction_read_only=on -c statement_timeout={round(timeout_seconds * 1000)}",
            "application_name": "mlops-trainer",
        },
    )


@dataclass(frozen=True)
class LabelledRows:
    """Labelled predictions of one model, oldest first (predicted_at, then id): what production saw and
    what the truth turned out to be."""

    features: pd.DataFrame
    """The feature rows the predictor received (the `features` JSON), one column per feature."""
    actual: NDArray[np.float64]
    prediction: NDArray[np.float64]
    """What the serving model answered."""
    predicted_at: pd.Series
    """UTC timestamps."""
    id: list[str]
    model_version: list[str]

    def __len__(self) -> int:
        return len(self.id)

    def take(self, rows: slice | NDArray[Any]) -> LabelledRows:
        """A subset, in the same order (a slice keeps time order)."""
        index = np.arange(len(self))[rows]
        return LabelledRows(
            features=self.features.iloc[index].reset_index(drop=True),
            actual=self.actual[index],
            prediction=self.prediction[index],
            predicted_at=self.predicted_at.iloc[index].reset_index(drop=True),
            id=[self.id[i] for i in index],
            model_version=[self.model_version[i] for i in index],
        )

    def digest(self) -> str:
        """sha256 of the (id, actual) pairs in order: which rows, with which labels, a run learned from."""
        h = hashlib.sha256()
        for pid, actual in zip(self.id, self.actual, strict=True):
            h.update(f"{pid}\t{float(actual)!r}\n".encode())
        return h.hexdigest()

    def time_range(self) -> tuple[str | None, str | None]:
        if not len(self):
            return None, None
        return _iso(self.predicted_at.iloc[0]), _iso(self.predicted_at.iloc[-1])


def labelled_rows(url: str, model_name: str, since: datetime) -> LabelledRows:
    """The model's predictions made at or after `since` that have a label, ordered by (predicted_at, id)."""
    query = (
        sa.select(
            predictions.c.id,
            predictions.c.model_version,
            predictions.c.predicted_at,
            predictions.c.features,
            predictions.c.prediction,
            labels.c.actual,
        )
        .select_from(predictions.join(labels, labels.c.id == predictions.c.id))
        .where(predictions.c.model_name == model_name, predictions.c.predicted_at >= _utc(since))
        .order_by(predictions.c.predicted_at, predictions.c.id)
    )
    rows = _read(url, lambda conn: conn.execute(query).all())
    return LabelledRows(
        features=pd.DataFrame.from_records([_features(r.features) for r in rows]),
        actual=np.array([r.actual for r in rows], dtype=float),
        prediction=np.array([r.prediction for r in rows], dtype=float),
        predicted_at=pd.Series([_utc(r.predicted_at) for r in rows], dtype="datetime64[ns, UTC]"),
        id=[r.id for r in rows],
        model_version=[r.model_version for r in rows],
    )


def version_mae(
    url: str, model_name: str, version: str, start: datetime, end: datetime, labelled_before: datetime
) -> tuple[float | None, int]:
    """MAE and count of one version's predictions with `start <= predicted_at < end` whose label was
    received by `labelled_before` (matured); (None, 0) without any."""
    query = (
        sa.select(
            sa.func.avg(sa.func.abs(predictions.c.prediction - labels.c.actual)),
            sa.func.count(),
        )
        .select_from(predictions.join(labels, labels.c.id == predictions.c.id))
        .where(
            predictions.c.model_name == model_name,
            predictions.c.model_version == version,
            predictions.c.predicted_at >= _utc(start),
            predictions.c.predicted_at < _utc(end),
            labels.c.received_at <= _utc(labelled_before),
        )
    )
    mae, rows = _read(url, lambda conn: conn.execute(query).one())
    return (None if mae is None else float(mae)), int(rows)


def _read(url: str, run: Any) -> Any:
    """One read-only session; any database problem becomes one LedgerUnavailable line without the password."""
    try:
        engine = connect(url)
    except ValueError as exc:
        raise LedgerUnavailable(f"ledger database URL: {exc}") from exc
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            missing = [t for t in ("predictions", "labels") if not inspector.has_table(t)]
            if missing:
                raise LedgerUnavailable(
                    f"the ledger database {describe(url)} has no {' or '.join(missing)} table: "
                    "a predictor with PREDICTOR_LEDGER_DATABASE_URL creates them when it starts"
                )
            return run(conn)
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LedgerUnavailable(f"cannot read the ledger database {describe(url)}: {reason}") from exc
    finally:
        engine.dispose()


def _features(value: Any) -> dict[str, Any]:
    # SQLite may hand the JSON back as text when the column was written by another client.
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _utc(value: datetime) -> datetime:
    # SQLite keeps naive UTC (the predictor writes UTC); PostgreSQL returns an aware timestamp.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: Any) -> str:
    return str(pd.Timestamp(value).tz_convert(UTC).isoformat())


# The same table with the columns revision 0002 added (which alias answered, the shadow's answer). Only
# the comparison reads them, so training and the rollback check still work on an older ledger.
served_predictions = sa.table(
    "predictions",
    sa.column("id", sa.String()),
    sa.column("model_name", sa.String()),
    sa.column("model_version", sa.String()),
    sa.column("model_alias", sa.String()),
    sa.column("predicted_at", sa.DateTime(timezone=True)),
    sa.column("prediction", sa.Double()),
    sa.column("shadow_version", sa.String()),
    sa.column("shadow_prediction", sa.Double()),
)
SERVING_COLUMNS = ("model_alias", "shadow_version", "shadow_prediction")


@dataclass(frozen=True)
class ServedRows:
    """Labelled predictions of one model with who answered them and what the shadow answered, oldest
    first (predicted_at, then id). String columns are object arrays (None where unknown), so a mask is
    one comparison: `rows.model_version == "3"`."""

    predicted_at: pd.Series
    """UTC timestamps."""
    model_version: NDArray[np.object_]
    model_alias: NDArray[np.object_]
    """The alias that answered; None on rows written before revision 0002."""
    prediction: NDArray[np.float64]
    shadow_version: NDArray[np.object_]
    shadow_prediction: NDArray[np.float64]
    """NaN where no shadow scored the row."""
    actual: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.actual)


def served_rows(
    url: str, model_name: str, start: datetime, end: datetime, labelled_before: datetime
) -> ServedRows:
    """The model's predictions with `start <= predicted_at < end` whose label was received by
    `labelled_before` (matured), ordered by (predicted_at, id). LedgerUnavailable on a ledger the
    predictor has not migrated to revision 0002 yet."""
    p = served_predictions
    query = (
        sa.select(
            p.c.predicted_at,
            p.c.model_version,
            p.c.model_alias,
            p.c.prediction,
            p.c.shadow_version,
            p.c.shadow_prediction,
            labels.c.actual,
        )
        .select_from(p.join(labels, labels.c.id == p.c.id))
        .where(
            p.c.model_name == model_name,
            p.c.predicted_at >= _utc(start),
            p.c.predicted_at < _utc(end),
            labels.c.received_at <= _utc(labelled_before),
        )
        .order_by(p.c.predicted_at, p.c.id)
    )

    def run(conn: sa.Connection) -> Any:
        present = {c["name"] for c in sa.inspect(conn).get_columns("predictions")}
        missing = [c for c in SERVING_COLUMNS if c not in present]
        if missing:
            raise LedgerUnavailable(
                f"the ledger database {describe(url)} has no {', '.join(missing)} column: a predictor "
                "of this release adds them (ledger revision 0002) when it starts"
            )
        return conn.execute(query).all()

    rows = _read(url, run)
    return ServedRows(
        predicted_at=pd.Series([_utc(r.predicted_at) for r in rows], dtype="datetime64[ns, UTC]"),
        model_version=np.array([r.model_version for r in rows], dtype=object),
        model_alias=np.array([r.model_alias for r in rows], dtype=object),
        prediction=np.array([r.prediction for r in rows], dtype=float),
        shadow_version=np.array([r.shadow_version for r in rows], dtype=object),
        shadow_prediction=np.array(
            [np.nan if r.shadow_prediction is None else r.shadow_prediction for r in rows], dtype=float
        ),
        actual=np.array([r.actual for r in rows], dtype=float),
    )
