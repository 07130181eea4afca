"""A short model card, logged beside the model so the registry says what the model is for."""

from __future__ import annotations


def _table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| model | RMSE | MAE | R² |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {m['rmse']:.2f} | {m['mae']:.2f} | {m['r2']:.3f} |" for name, m in rows.items()]
    return "\n".join(lines)


def _production_rows(ledger: dict[str, object]) -> str:
    if not ledger.get("used"):
        return f"Production labels: not used ({ledger.get('reason', 'no ledger')}).\n"
    return f"""## Production labels
{ledger["rows"]} labelled predictions from the ledger ({ledger["from"]} → {ledger["until"]},
sha256 `{ledger["digest"]}`), in time order:
- the oldest {ledger["fit_rows"]} were added to training + validation for the refit;
- the next {ledger["calibration_rows"]} set the price level: predictions are multiplied by
  {ledger["factor"]} (Σ actual / Σ predicted on those rows, bounded to 0.5…2), because the year's level is
  in no feature and the trees would average the recent rows with the same months of earlier years;
- the newest {ledger["gate_rows"]} were held out for the gate: both models on the same rows, paired.
The drift reference of this version is a sample of the ledger rows it learned from.
"""


def render(
    *,
    model_name: str,
    dataset: str,
    target: str,
    summary: dict[str, object],
    boundaries: dict[str, str],
    counts: dict[str, int],
    winner: str,
    validation: dict[str, dict[str, float]],
    test: dict[str, dict[str, float]],
    decision: str,
    ledger: dict[str, object] | None = None,
) -> str:
    return f"""# Model card: {model_name}

## Purpose
Predicts `{target}` for a hotel booking from the booking's own fields. Served by the predictor;
watched for drift by the drift monitor.

## Data
- Source: `{dataset}`, {summary["rows"]} usable rows, {summary["numeric_features"]} numeric and
  {summary["categorical_features"]} categorical features; missing values: {summary["columns_with_missing"] or "none"}.
- The arrival date is not a feature; `arrival_month` and `arrival_weekday` are derived from it.
- Time split (live traffic is always in the future): train {boundaries["train_start"]} → {boundaries["validation_start"]}
  ({counts["train"]} rows), validation → {boundaries["test_start"]} ({counts["validation"]} rows),
  test → {boundaries["test_end"]} ({counts["test"]} rows).

## Selection
Candidates were fitted on the training window and compared by validation RMSE; the winner,
`{winner}`, was refitted on training + validation and scored once on the test window.

Validation:

{_table(validation)}

Test (winner refitted on train + validation; baseline predicts the training mean):

{_table(test)}

{_production_rows(ledger or {})}
Registry decision: {decision}.

## Limitations
- Trained on one hotel's bookings from {boundaries["train_start"]} to {boundaries["test_start"]}; prices move with
  season and year, so expect drift in months the data does not cover — the drift monitor watches for it.
- Rare and unseen categories (agents, companies, countries) share one bucket: their prices are estimated
  from the pooled rows.
- The target is the average daily rate before cancellations; the model says nothing about cancellations.
"""
