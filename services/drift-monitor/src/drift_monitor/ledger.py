"""Read-only queries on the predictor's predictions ledger (docs/interfaces.md, "Predictions ledger").

The predictor owns that database: its schema, migrations and writes. The monitor names the tables and
columns it reads here and nothing else, and never imports the predictor (separate images);
tests/test_contract.py runs these queries on the schema the predictor's migrations create.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

SUPPORTED_BACKENDS = ("postgresql", "sqlite")

# Lightweight table clauses: only the columns read, typed so timestamps come back as datetimes.
predictions = sa.table(
    "predictions",
    sa.column("id", sa.String()),
    sa.column("model_name", sa.String()),
    sa.column("model_version", sa.String()),
    sa.column("predicted_at", sa.DateTime(timezone=True)),
    sa.column("prediction", sa.Double()),
    sa.column("shadow_version", sa.String()),  # revision 0002: absent from older ledgers
    sa.column("shadow_prediction", sa.Double()),
)
SHADOW_COLUMNS = ("shadow_version", "shadow_prediction")
labels = sa.table(
    "labels",
    sa.column("id", sa.String()),
    sa.column("actual", sa.Double()),
    sa.column("received_at", sa.DateTime(timezone=True)),
)


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


def connect(url: str, *, timeout_seconds: float = 10) -> Engine:
    """A read-only engine whose waits are bounded: a dead database fails the check in seconds.

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
        poolclass=sa.pool.NullPool,  # one short check per run: no pool to keep
        connect_args={
            "connect_timeout": max(1, round(timeout_seconds)),
            "options": f"-c default_transaction_read_only=on -c statement_timeout={round(timeout_seconds * 1000)}",
            "application_name": "mlops-drift-monitor",
        },
    )


@dataclass(frozen=True)
class VersionErrors:
    """One model version's predictions in the window, and the errors of those that have a label."""

    model_version: str
    ledger_rows: int
    """Predictions in the window, labelled or not."""
    labelled_rows: int
    mae: float | None
    """Mean absolute error over the labelled rows; None without any."""
    rmse: float | None
    bias: float | None
    """Mean of prediction − actual: negative means the model predicts too low."""


def version_errors(conn: Connection, model_name: str, start: datetime, end: datetime) -> list[VersionErrors]:
    """Per model version, predictions with `start < predicted_at <= end` joined with their labels by id.

    The aggregates run in the database (a week of predictions need not travel); a label whose id matches
    no prediction in the window is not counted.
    """
    error = predictions.c.prediction - labels.c.actual
    query = (
        sa.select(
            predictions.c.model_version,
            sa.func.count().label("ledger_rows"),
            sa.func.count(labels.c.id).label("labelled_rows"),
            *_error_averages(error),
        )
        .select_from(predictions.outerjoin(labels, labels.c.id == predictions.c.id))
        .where(
            predictions.c.model_name == model_name,
            predictions.c.predicted_at > start,
            predictions.c.predicted_at <= end,
        )
        .group_by(predictions.c.model_version)
    )
    rows = [
        VersionErrors(
            model_version=row.model_version,
            ledger_rows=int(row.ledger_rows),
            labelled_rows=int(row.labelled_rows),
            mae=_float(row.mae),
            rmse=None if row.mse is None else float(row.mse) ** 0.5,
            bias=_float(row.bias),
        )
        for row in conn.execute(query)
    ]
    return sorted(rows, key=lambda r: _version_key(r.model_version))


@dataclass(frozen=True)
class ShadowErrors:
    """The labelled rows one served version answered and one shadow version also scored: both versions'
    errors on exactly those rows, so the two are compared like for like."""

    model_version: str
    shadow_version: str
    labelled_rows: int
    served_mae: float
    served_rmse: float
    served_bias: float
    shadow_mae: float
    shadow_rmse: float
    shadow_bias: float


def shadow_errors(conn: Connection, model_name: str, start: datetime, end: datetime) -> list[ShadowErrors]:
    """Per (served version, shadow version), the labelled predictions with `start < predicted_at <= end`
    that carry a shadow prediction. Needs the shadow columns (see missing_shadow_columns)."""
    served = predictions.c.prediction - labels.c.actual
    shadow = predictions.c.shadow_prediction - labels.c.actual
    query = (
        sa.select(
            predictions.c.model_version,
            predictions.c.shadow_version,
            sa.func.count().label("labelled_rows"),
            *_error_averages(served, "served_"),
            *_error_averages(shadow, "shadow_"),
        )
        .select_from(predictions.join(labels, labels.c.id == predictions.c.id))
        .where(
            predictions.c.model_name == model_name,
            predictions.c.predicted_at > start,
            predictions.c.predicted_at <= end,
            predictions.c.shadow_version.is_not(None),
            predictions.c.shadow_prediction.is_not(None),
        )
        .group_by(predictions.c.model_version, predictions.c.shadow_version)
    )
    rows = [
        ShadowErrors(
            model_version=row.model_version,
            shadow_version=row.shadow_version,
            labelled_rows=int(row.labelled_rows),
            served_mae=float(row.served_mae),
            served_rmse=float(row.served_mse) ** 0.5,
            served_bias=float(row.served_bias),
            shadow_mae=float(row.shadow_mae),
            shadow_rmse=float(row.shadow_mse) ** 0.5,
            shadow_bias=float(row.shadow_bias),
        )
        for row in conn.execute(query)
    ]
    return sorted(rows, key=lambda r: (_version_key(r.model_version), _version_key(r.shadow_version)))


@dataclass(frozen=True)
class LastLabel:
    at: datetime
    source: str
    """`label`: the newest label's received_at; `prediction`: no label yet, the oldest prediction's time."""


def last_label(conn: Connection) -> LastLabel | None:
    """When labels last arrived, for LabelsMissing. Without any label yet, the oldest prediction stands in
    (labels have been missing since then); an empty ledger has neither (None)."""
    newest = conn.execute(sa.select(sa.func.max(labels.c.received_at))).scalar()
    if newest is not None:
        return LastLabel(_utc(newest), "label")
    oldest = conn.execute(sa.select(sa.func.min(predictions.c.predicted_at))).scalar()
    return LastLabel(_utc(oldest), "prediction") if oldest is not None else None


def missing_tables(conn: Connection) -> list[str]:
    """Ledger tables the database lacks (the predictor creates them when it starts with a ledger URL)."""
    inspector = sa.inspect(conn)
    return [name for name in ("predictions", "labels") if not inspector.has_table(name)]


def missing_shadow_columns(conn: Connection) -> list[str]:
    """Shadow columns the predictions table lacks: a ledger not yet migrated to revision 0002."""
    present = {column["name"] for column in sa.inspect(conn).get_columns("predictions")}
    return [name for name in SHADOW_COLUMNS if name not in present]


def _utc(value: datetime) -> datetime:
    # SQLite keeps naive UTC (the predictor writes UTC); PostgreSQL returns an aware timestamp.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _error_averages(error: Any, prefix: str = "") -> list[Any]:
    """`<prefix>mae`, `<prefix>mse` and `<prefix>bias` of an error expression (prediction − actual)."""
    return [
        sa.func.avg(sa.func.abs(error)).label(f"{prefix}mae"),
        sa.func.avg(error * error).label(f"{prefix}mse"),
        sa.func.avg(error).label(f"{prefix}bias"),
    ]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)
