"""The periodic automatic rollback check: `trainer.rollback.auto_rollback` with the trainer's settings,
counted, logged, and an Event when it rolled back. It never raises: a failing check (MLflow or the
ledger down) is counted as `failed` and logged, and the next interval tries again."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from trainer.config import Settings
from trainer.controller import metrics
from trainer.controller.events import EventRecorder

log = logging.getLogger("trainer.controller")


def rollback_check_enabled(settings: Settings | None, interval_seconds: float) -> bool:
    return (
        settings is not None and interval_seconds > 0 and bool(getattr(settings, "ledger_database_url", None))
    )


def check_rollback(settings: Settings, events: EventRecorder) -> dict[str, Any]:
    """One check; its verdict as a dict (plus `checked_at`), for GET /v1/state."""
    checked_at = datetime.now(UTC).isoformat()
    try:
        from trainer.rollback import auto_rollback  # imported here: the MLflow client is heavy

        verdict = auto_rollback(settings)
    except Exception as exc:
        metrics.ROLLBACK_CHECKS.labels("failed").inc()
        reason = f"{type(exc).__name__}: {exc}"
        log.error("rollback check failed: %s", reason)
        log.debug("traceback", exc_info=True)
        return {"action": "failed", "reason": reason, "checked_at": checked_at}
    result: dict[str, Any] = asdict(verdict)
    action = str(result.get("action"))
    metrics.ROLLBACK_CHECKS.labels(action).inc()
    fields = {key: value for key, value in result.items() if key != "reason"}
    if action == "rolled_back":
        metrics.ROLLBACKS.labels(result["model_name"]).inc()
        log.warning("champion rolled back: %s", result["reason"], extra=fields)
        events.record(
            "ModelRolledBack",
            f"{result['model_name']}: champion v{result['from_version']} → v{result['to_version']}: {result['reason']}",
            "Warning",
        )
    elif action == "kept":
        log.info("rollback check kept the champion: %s", result["reason"], extra=fields)
    else:  # waiting, skipped: every interval until something changes
        log.debug("rollback check %s: %s", action, result["reason"], extra=fields)
    return {**result, "checked_at": checked_at}
