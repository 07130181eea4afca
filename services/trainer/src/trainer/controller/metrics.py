"""Every Prometheus metric of the retrain controller, defined once (names and labels: docs/interfaces.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from trainer.controller.decide import SKIP_REASONS, TRIGGER_REASONS

DECISIONS = Counter(
    "trainer_controller_retrain_decisions",
    "Decisions on alerts: started, skipped or dry_run, with the reason (the trigger, or why not).",
    ["decision", "reason"],
)
RUNS = Counter(
    "trainer_controller_retrain_runs",
    "Training runs the controller started that ended, by outcome (a vanished run counts as failed).",
    ["outcome"],
)
RUNNING = Gauge("trainer_controller_retrain_running", "1 while a run this controller started is running.")
ROLLBACKS = Counter(
    "trainer_controller_rollbacks", "Automatic rollbacks of the champion alias.", ["model_name"]
)
ROLLBACK_CHECKS = Counter(
    "trainer_controller_rollback_checks",
    "Automatic rollback checks, by what they did (rolled_back, kept, waiting, skipped, failed).",
    ["action"],
)

# Exported at 0 from the start, so increase() and the alerts see the first event.
for _trigger in TRIGGER_REASONS:
    DECISIONS.labels("started", _trigger)
    DECISIONS.labels("dry_run", _trigger)
for _reason in SKIP_REASONS:
    DECISIONS.labels("skipped", _reason)
for _outcome in ("succeeded", "failed"):
    RUNS.labels(_outcome)
for _action in ("rolled_back", "kept", "waiting", "skipped", "failed"):
    ROLLBACK_CHECKS.labels(_action)


def watch_model(model_name: str) -> None:
    """Export `trainer_controller_rollbacks_total{model_name}` at 0 for the model the checks watch."""
    ROLLBACKS.labels(model_name)
