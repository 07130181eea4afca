"""`trainer compare`: the A/B verdict between the champion and a challenger on matured production labels.

Two ways the predictor lets a challenger answer (docs/interfaces.md, "Predictions ledger"):

- shadow: the champion answers and the challenger scores the same row off the response path
  (`shadow_version`, `shadow_prediction`). Both errors of a row move together, so the interval is the
  paired bootstrap of the gate (trainer/paired_gate.py).
- canary: a sticky share of users is answered by the challenger (`model_alias` = its alias). The two
  arms hold different rows, so each is resampled on its own; only the span in which both served counts
  (the first to the last canary row), so a change of regime before the canary started does not weigh
  on the champion alone.

`compare_rows` is the rule, pure; `run_compare` resolves the aliases, reads the ledger and publishes the
report (trainer/compare_report.py).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import numpy as np
from mlflow import MlflowClient
from numpy.typing import NDArray

from trainer.config import Settings
from trainer.errors import TrainerError
from trainer.gate import current_version
from trainer.ledger import ServedRows, served_rows
from trainer.paired_gate import bootstrap

log = logging.getLogger(__name__)

Mode = Literal["shadow", "canary"]
Requested = Literal["auto", "shadow", "canary"]
Verdict = Literal["challenger_better", "champion_better", "no_difference", "insufficient_data"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
RESAMPLED_VALUES_PER_CHUNK = 4_000_000
"""Bounds the unpaired bootstrap's memory (about 64 MB of indices and values at a time)."""


@dataclass(frozen=True)
class Contender:
    """One side of the comparison: the alias and the version it pointed at when the comparison ran."""

    alias: str
    version: str


@dataclass(frozen=True)
class Arm:
    """The errors of one side on the rows compared. `bias` is mean(prediction − actual): above 0 the
    model over-predicts. `share` (canary) is the arm's part of both arms' rows."""

    alias: str
    version: str
    rows: int
    mae: float | None = None
    rmse: float | None = None
    bias: float | None = None
    share: float | None = None

    @classmethod
    def of(
        cls,
        side: Contender,
        actual: NDArray[np.float64],
        predicted: NDArray[np.float64],
        share: float | None = None,
    ) -> Arm:
        if not len(actual):
            return cls(side.alias, side.version, 0, share=share)
        error = predicted - actual
        return cls(
            side.alias,
            side.version,
            len(actual),
            mae=float(np.mean(np.abs(error))),
            rmse=float(np.sqrt(np.mean(error**2))),
            bias=float(np.mean(error)),
            share=share,
        )


@dataclass(frozen=True)
class Difference:
    """MAE(challenger) − MAE(champion), below 0 is better, with its 95% bootstrap interval."""

    mae: float
    low: float
    high: float
    paired: bool
    bootstrap_samples: int


@dataclass(frozen=True)
class Comparison:
    """The verdict and everything it was decided on; `summary()` is the report (stdout, comparison.json)."""

    model: str
    mode: Mode
    mode_reason: str
    verdict: Verdict
    reason: str
    champion: Arm
    challenger: Arm
    difference: Difference | None
    min_rows: int
    min_improvement: float
    window: dict[str, str | None] = field(default_factory=dict)
    """since/until (asked), labels_received_by (maturity), first_row/last_row (of the rows compared)."""

    def rows_missing(self) -> dict[str, int]:
        return {
            "champion": max(0, self.min_rows - self.champion.rows),
            "challenger": max(0, self.min_rows - self.challenger.rows),
        }

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("champion", "challenger"):
            out[key] = _rounded(out[key])
        if self.difference is not None:
            out["difference"] = _rounded(out["difference"])
        out["rows_missing"] = self.rows_missing()
        return out


def decide(difference: Difference, min_improvement: float) -> tuple[Verdict, str]:
    """challenger_better when the whole interval lies below −min_improvement, champion_better when it lies
    above 0, otherwise no_difference (the data cannot tell them apart, or the gain is too small)."""
    d = difference
    numbers = f"MAE difference {d.mae:+.3f} (95% interval {d.low:+.3f} to {d.high:+.3f})"
    if d.high < -min_improvement:
        bound = f"−{min_improvement:g}" if min_improvement else "0"
        return "challenger_better", f"{numbers}: entirely below {bound}"
    if d.low > 0:
        return "champion_better", f"{numbers}: entirely above 0"
    return "no_difference", f"{numbers}: neither entirely below −{min_improvement:g} nor above 0"


def unpaired_bootstrap(
    champion_errors: NDArray[np.float64], challenger_errors: NDArray[np.float64], samples: int, seed: int
) -> tuple[float, float]:
    """95% percentile interval of mean|challenger| − mean|champion|, each arm resampled on its own."""
    rng = np.random.default_rng(seed)
    champion = _resampled_means(np.abs(champion_errors), samples, rng)
    challenger = _resampled_means(np.abs(challenger_errors), samples, rng)
    low, high = np.percentile(challenger - champion, [2.5, 97.5])
    return float(low), float(high)


def _resampled_means(values: NDArray[np.float64], samples: int, rng: np.random.Generator) -> NDArray[Any]:
    means = np.empty(samples)
    chunk = max(1, min(samples, RESAMPLED_VALUES_PER_CHUNK // len(values)))
    for start in range(0, samples, chunk):
        count = min(chunk, samples - start)
        means[start : start + count] = values[rng.integers(0, len(values), size=(count, len(values)))].mean(
            axis=1
        )
    return means


def shadow_mask(rows: ServedRows, champion: Contender, challenger: Contender) -> NDArray[np.bool_]:
    """Rows the champion answered and the challenger's version scored in the shadow."""
    return np.asarray(
        (rows.model_version == champion.version)
        & (rows.shadow_version == challenger.version)
        & ~np.isnan(rows.shadow_prediction),
        dtype=bool,
    )


def canary_masks(
    rows: ServedRows, champion: Contender, challenger: Contender
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(champion arm, challenger arm): the rows each alias answered with its version, both cut to the span
    from the first to the last canary row (rows are in time order)."""
    canary = (rows.model_alias == challenger.alias) & (rows.model_version == challenger.version)
    incumbent = (rows.model_alias == champion.alias) & (rows.model_version == champion.version)
    if not canary.any():
        return np.zeros(len(rows), dtype=bool), canary
    at = rows.predicted_at
    first, last = at[canary].iloc[0], at[canary].iloc[-1]
    both_served = ((at >= first) & (at <= last)).to_numpy()
    return incumbent & both_served, canary


def choose_mode(requested: Requested, pairs: int, canary_rows: int, min_rows: int) -> tuple[Mode, str]:
    """auto: shadow when there are enough pairs (the sharper test), else the canary split if it served."""
    if requested != "auto":
        return requested, f"--mode {requested}"
    if pairs >= min_rows:
        return "shadow", f"auto: {pairs} paired rows (at least {min_rows})"
    if canary_rows:
        return "canary", f"auto: {pairs} paired rows (fewer than {min_rows}), {canary_rows} canary rows"
    return "shadow", f"auto: {pairs} paired rows (fewer than {min_rows}) and no canary rows"


def compare_rows(
    model: str,
    rows: ServedRows,
    champion: Contender,
    challenger: Contender,
    *,
    mode: Requested = "auto",
    min_rows: int,
    samples: int,
    seed: int,
    min_improvement: float,
    window: dict[str, str | None] | None = None,
) -> Comparison:
    """The verdict on these rows; insufficient_data when an arm has fewer than `min_rows` rows."""
    paired = shadow_mask(rows, champion, challenger)
    incumbent, canary = canary_masks(rows, champion, challenger)
    chosen, mode_reason = choose_mode(mode, int(paired.sum()), int(canary.sum()), min_rows)
    actual = rows.actual
    if chosen == "shadow":
        champion_arm = Arm.of(champion, actual[paired], rows.prediction[paired])
        challenger_arm = Arm.of(challenger, actual[paired], rows.shadow_prediction[paired])
        compared = paired
    else:
        total = int(incumbent.sum() + canary.sum())
        champion_arm = Arm.of(
            champion, actual[incumbent], rows.prediction[incumbent], _share(incumbent, total)
        )
        challenger_arm = Arm.of(challenger, actual[canary], rows.prediction[canary], _share(canary, total))
        compared = incumbent | canary
    at = rows.predicted_at[compared]
    window = {
        **(window or {}),
        "first_row": _iso(at.iloc[0]) if len(at) else None,
        "last_row": _iso(at.iloc[-1]) if len(at) else None,
    }

    def result(verdict: Verdict, reason: str, difference: Difference | None = None) -> Comparison:
        return Comparison(
            model, chosen, mode_reason, verdict, reason, champion_arm, challenger_arm, difference,
            min_rows, min_improvement, window,
        )  # fmt: skip

    if min(champion_arm.rows, challenger_arm.rows) < min_rows:
        if chosen == "shadow":
            have = f"{champion_arm.rows} paired rows"
            short = f"{min_rows - champion_arm.rows} more pairs"
        else:
            have = f"{champion_arm.rows} champion and {challenger_arm.rows} canary rows"
            short = " and ".join(
                f"{min_rows - arm.rows} more {name} rows"
                for name, arm in (("champion", champion_arm), ("canary", challenger_arm))
                if arm.rows < min_rows
            )
        reason = f"{have}, {min_rows} per arm needed (TRAINER_COMPARE_MIN_ROWS): {short}"
        return result("insufficient_data", reason)
    if chosen == "shadow":
        p = bootstrap(
            actual[paired] - rows.prediction[paired],
            actual[paired] - rows.shadow_prediction[paired],
            samples,
            seed,
        )
        difference = Difference(p.diff, p.low, p.high, paired=True, bootstrap_samples=samples)
    else:
        champion_errors = actual[incumbent] - rows.prediction[incumbent]
        challenger_errors = actual[canary] - rows.prediction[canary]
        low, high = unpaired_bootstrap(champion_errors, challenger_errors, samples, seed)
        diff = float(np.mean(np.abs(challenger_errors)) - np.mean(np.abs(champion_errors)))
        difference = Difference(diff, low, high, paired=False, bootstrap_samples=samples)
    verdict, reason = decide(difference, min_improvement)
    return result(verdict, reason, difference)


def run_compare(
    settings: Settings,
    *,
    champion_alias: str,
    challenger_alias: str,
    mode: Requested = "auto",
    since: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Resolve both aliases, read the matured labelled rows, decide, and report (MLflow, Pushgateway).
    Returns the report with the MLflow run id. TrainerError for a missing alias or an unreadable ledger."""
    from trainer.compare_report import log_to_mlflow, push_metrics  # it imports this module

    if settings.ledger_database_url is None:  # the CLI says so first; this guards other callers
        raise TrainerError("trainer compare needs the ledger: set TRAINER_LEDGER_DATABASE_URL")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    since = (since or now - timedelta(days=settings.ledger_window_days)).astimezone(UTC)
    matured = now - timedelta(seconds=settings.label_delay_seconds)
    client = MlflowClient(settings.mlflow_tracking_uri)
    name = settings.model_name
    sides = []
    for alias in (champion_alias, challenger_alias):
        version = current_version(client, name, alias)
        if version is None:
            raise TrainerError(f"model {name!r} has no {alias!r} alias")
        sides.append(Contender(alias, str(version.version)))  # SQL stores answer an int
    champion, challenger = sides
    if champion.version == challenger.version:
        raise TrainerError(
            f"{champion_alias!r} and {challenger_alias!r} both point at v{champion.version}: nothing to compare"
        )
    rows = served_rows(settings.ledger_database_url, name, since, now, matured)
    window: dict[str, str | None] = {
        "since": since.isoformat(),
        "until": now.isoformat(),
        "labels_received_by": matured.isoformat(),
    }
    comparison = compare_rows(
        name,
        rows,
        champion,
        challenger,
        mode=mode,
        min_rows=settings.compare_min_rows,
        samples=settings.gate_bootstrap_samples,
        seed=settings.seed,
        min_improvement=settings.gate_min_improvement,
        window=window,
    )
    report = comparison.summary()
    log.info("comparison", extra={"verdict": comparison.verdict, "reason": comparison.reason})
    report["mlflow_run_id"] = log_to_mlflow(client, settings.experiment_name, comparison)
    pushed = False
    if settings.pushgateway_url:
        pushed = push_metrics(settings.pushgateway_url, comparison, now)
    report["metrics_pushed"] = pushed
    return report


def _share(mask: NDArray[np.bool_], total: int) -> float | None:
    return int(mask.sum()) / total if total else None


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def _iso(value: Any) -> str:
    return str(value.isoformat())
