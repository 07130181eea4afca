"""What production saw, for a retrain: the labelled ledger rows, in time order, cut into three parts
(docs/model.md, "Retraining on production labels").

    oldest ─────────────────────────────────────────────────────────────▶ newest
    │ fit: added to train + validation │ calibration: the level factor │ gate: judged on, never fitted │

The gate part is the newest TRAINER_GATE_RECENT_FRACTION; the rest is halved. A ledger that cannot be
read, is too small, or holds other features is not used, and the run says why: the dataset alone and the
test-window gate, as without a ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from trainer.config import Settings
from trainer.data import Features
from trainer.ledger import LabelledRows, LedgerUnavailable, labelled_rows
from trainer.paired_gate import LEDGER_FIT_UNTIL_TAG

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One time-ordered slice of the labelled rows, as model input."""

    X: pd.DataFrame
    y: NDArray[np.float64]
    predicted_at: pd.Series

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def empty(cls, columns: pd.Index) -> Part:
        return cls(pd.DataFrame(columns=columns), np.empty(0), pd.Series([], dtype="datetime64[ns, UTC]"))


@dataclass(frozen=True)
class RecentRows:
    """The ledger's part in one run; `used` False means none of it (with `reason`)."""

    used: bool
    reason: str
    fit: Part
    calibration: Part
    gate: Part
    rows: int = 0
    time_range: tuple[str | None, str | None] = (None, None)
    digest: str | None = None
    factor: float | None = field(default=None, compare=False)

    @property
    def fit_until(self) -> str | None:
        """The newest predicted_at the model learned from (fit or calibration rows)."""
        learned = self.calibration.predicted_at if len(self.calibration) else self.fit.predicted_at
        return None if learned.empty else pd.Timestamp(learned.iloc[-1]).isoformat()

    def summary(self) -> dict[str, object]:
        """The `ledger` object of the run's outcome JSON."""
        out: dict[str, object] = {"used": self.used, "reason": self.reason, "rows": self.rows}
        if self.used:
            out |= {"fit_rows": len(self.fit), "calibration_rows": len(self.calibration)}
            out |= {"gate_rows": len(self.gate), "from": self.time_range[0], "until": self.time_range[1]}
            out |= {"fit_until": self.fit_until, "digest": self.digest}
            out["factor"] = None if self.factor is None else round(self.factor, 4)
        return out

    def tags(self) -> dict[str, str]:
        """Tags for the run and the model version (strings; absent values left out)."""
        tags = {"ledger_used": str(self.used).lower(), "ledger_rows": str(self.rows)}
        if self.used:
            values: dict[str, Any] = {
                "ledger_fit_rows": len(self.fit),
                "ledger_calibration_rows": len(self.calibration),
                "ledger_gate_rows": len(self.gate),
                "ledger_from": self.time_range[0],
                "ledger_until": self.time_range[1],
                "ledger_digest": self.digest,
                LEDGER_FIT_UNTIL_TAG: self.fit_until,
                "recalibration_factor": None if self.factor is None else f"{self.factor:.4f}",
            }
            tags |= {key: str(value) for key, value in values.items() if value is not None}
        else:
            tags["ledger_not_used"] = self.reason[:5000]
        return tags

    def with_factor(self, factor: float) -> RecentRows:
        return RecentRows(
            self.used, self.reason, self.fit, self.calibration, self.gate,
            self.rows, self.time_range, self.digest, factor,
        )  # fmt: skip


def not_used(reason: str, columns: pd.Index, rows: int = 0) -> RecentRows:
    log.info("ledger not used: %s", reason, extra={"ledger_rows": rows})
    empty = Part.empty(columns)
    return RecentRows(False, reason, empty, empty, empty, rows)


def read_recent(settings: Settings, features: Features, now: datetime | None = None) -> RecentRows:
    """The labelled rows of the last TRAINER_LEDGER_WINDOW_DAYS, aligned with the dataset's features."""
    columns = features.X.columns
    if settings.ledger_database_url is None:
        return not_used("no ledger (TRAINER_LEDGER_DATABASE_URL unset)", columns)
    since = (now or datetime.now(UTC)) - timedelta(days=settings.ledger_window_days)
    try:
        labelled = labelled_rows(settings.ledger_database_url, settings.model_name, since)
    except LedgerUnavailable as exc:  # a run without the ledger beats no run: said, and the gate falls back
        log.warning("ledger unavailable: %s", exc)
        return not_used(str(exc), columns)
    if len(labelled) < settings.ledger_min_rows:
        return not_used(
            f"{len(labelled)} labelled rows in the last {settings.ledger_window_days:g} days "
            f"(< TRAINER_LEDGER_MIN_ROWS={settings.ledger_min_rows})",
            columns,
            len(labelled),
        )
    try:
        X = align(labelled.features, features.X)
    except ValueError as exc:
        return not_used(f"ledger rows do not match the dataset's features: {exc}", columns, len(labelled))
    return split(labelled, X, settings.gate_recent_fraction)


def align(ledger_features: pd.DataFrame, X: pd.DataFrame) -> pd.DataFrame:
    """The ledger's feature rows with the dataset's columns and dtypes; ValueError naming what differs."""
    missing = [c for c in X.columns if c not in ledger_features.columns]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    aligned = ledger_features[list(X.columns)].copy()
    for column in X.columns:
        try:
            aligned[column] = aligned[column].astype(X[column].dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{column} is not {X[column].dtype} ({exc})") from None
    return aligned


def split(labelled: LabelledRows, X: pd.DataFrame, gate_fraction: float) -> RecentRows:
    n = len(labelled)
    gate_rows = int(np.ceil(n * gate_fraction))
    fit_rows = (n - gate_rows) // 2

    def part(rows: slice) -> Part:
        return Part(
            X.iloc[rows].reset_index(drop=True),
            labelled.actual[rows],
            labelled.predicted_at.iloc[rows].reset_index(drop=True),
        )

    recent = RecentRows(
        used=True,
        reason=f"{n} labelled rows",
        fit=part(slice(0, fit_rows)),
        calibration=part(slice(fit_rows, n - gate_rows)),
        gate=part(slice(n - gate_rows, n)),
        rows=n,
        time_range=labelled.time_range(),
        digest=labelled.digest(),
    )
    log.info("ledger used", extra=recent.summary())
    return recent
