"""`predictor labels import FILE`: the bulk path for labels (a daily export), with the feedback route's rules.

Every row is validated by the same `LabelIn` model as the feedback body; valid rows are stored in
transactions of CHUNK_ROWS, invalid ones are reported with their row number and reason. Ids repeated
in the file count once (the last row wins, as a re-sent label does on the route), so importing the
same file twice changes nothing.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from predictor.ledger.feedback import LabelIn
from predictor.ledger.store import Label, LabelOutcome, LedgerStore

CHUNK_ROWS = 5000
REASONS_SHOWN = 100
REQUIRED_COLUMNS = ("id", "actual")
OPTIONAL_COLUMNS = ("time",)


class ImportFileError(Exception):
    """The file cannot be read as labels at all (missing, unknown format, missing columns)."""


@dataclass
class ImportSummary:
    rows_read: int = 0
    outcome: LabelOutcome = field(default_factory=LabelOutcome)
    rejected: int = 0
    reasons: list[dict[str, Any]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "stored": self.outcome.stored,
            "duplicates": self.outcome.duplicates,
            "replaced": self.outcome.replaced,
            "matched": self.outcome.matched,
            "unmatched": len(self.outcome.unmatched_ids),
            "rejected": self.rejected,
            "reasons": self.reasons[:REASONS_SHOWN],
            "ignored_columns": self.ignored_columns,
        }


def read_labels_file(path: str) -> pd.DataFrame:
    """CSV (`.csv`, or `-` for standard input) or Parquet (`.parquet`), every column as read."""
    if path == "-":
        return pd.read_csv(io.StringIO(sys.stdin.read()), dtype=str, keep_default_na=False)
    file = Path(path)
    if not file.is_file():
        raise ImportFileError(f"{path}: no such file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(file, dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(file, engine="fastparquet")
    except (ValueError, OSError) as exc:
        raise ImportFileError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from None
    raise ImportFileError(
        f"{path}: unknown format {suffix or '(no suffix)'}; use .csv, .parquet or - (CSV on stdin)"
    )


def import_labels(frame: pd.DataFrame, store: LedgerStore) -> ImportSummary:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ImportFileError(
            f"missing column(s) {', '.join(missing)}; the file needs id, actual and optionally time"
        )
    summary = ImportSummary(
        rows_read=len(frame),
        ignored_columns=[str(c) for c in frame.columns if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)],
    )
    valid: list[Label] = []
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    for number, values in enumerate(frame[columns].itertuples(index=False, name=None), start=1):
        record = {column: _cell(value) for column, value in zip(columns, values, strict=True)}
        record["actual"] = _number(record["actual"])
        try:
            valid.append(LabelIn.model_validate(record).to_label())
        except ValidationError as exc:
            summary.rejected += 1
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            summary.reasons.append({"row": number, "id": record.get("id"), "reason": reason})
    latest = {label.id: label for label in valid}  # the last row of an id wins
    summary.outcome.duplicates = len(valid) - len(latest)
    unique = list(latest.values())
    for start in range(0, len(unique), CHUNK_ROWS):
        summary.outcome.add(store.store_labels(unique[start : start + CHUNK_ROWS]))
    return summary


def _number(value: Any) -> Any:
    """A CSV cell's text as a number when it is one; anything else stays as read and is rejected with a reason."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _cell(value: Any) -> Any:
    """Empty CSV cells and missing Parquet values are absent, not the string "" or NaN."""
    if value is None or value is pd.NaT or (isinstance(value, str) and value == ""):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
