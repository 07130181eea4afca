"""The guard rails as pure functions: what to do with one alert, and how the state changes with it.

`decide` checks, in this order, and the first that applies is the decision:
disabled → resolved → not a trigger (drift: disabled or too young) → duplicate (this fingerprint
started a run in the last 7 days) → already running → cooldown → daily cap → dry run → started.
Only a started run consumes anything (the fingerprint, a slot of the cap; the cooldown follows its
end), so an alert that was skipped for a cooldown starts a run when Alertmanager repeats it later.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from trainer.controller.config import ControllerSettings
from trainer.controller.state import DecisionRecord, GuardState, Outcome, RunningRun, RunRecord, Trigger
from trainer.controller.webhook import Alert

SEEN_FOR = timedelta(days=7)
CAP_WINDOW = timedelta(hours=24)
RECENT_DECISIONS = 50

DecisionKind = Literal["started", "skipped", "dry_run"]
TRIGGER_REASONS: tuple[Trigger, ...] = ("quality_degraded", "drift_persisted")
SKIP_REASONS = (
    "disabled",
    "resolved",
    "not_a_trigger",
    "drift_trigger_disabled",
    "drift_too_young",
    "duplicate",
    "already_running",
    "cooldown",
    "daily_cap",
    "launch_failed",
)


@dataclass(frozen=True)
class Decision:
    decision: DecisionKind
    reason: str
    fingerprint: str
    alertname: str
    model_name: str | None = None
    model_version: str | None = None
    run: str | None = None
    """The run started (or that would have been, for launch_failed); the running one for already_running."""
    detail: str | None = None
    """For people: until when the cooldown lasts, why a launch failed, ..."""

    def as_dict(self) -> dict[str, str | None]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "alertname": self.alertname,
            "fingerprint": self.fingerprint,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "run": self.run,
            "detail": self.detail,
        }


def decide(state: GuardState, alert: Alert, now: datetime, settings: ControllerSettings) -> Decision:
    def skip(reason: str, detail: str | None = None, run: str | None = None) -> Decision:
        return Decision("skipped", reason, alert.fingerprint, alert.alertname, *_model(alert), run, detail)

    if not settings.enabled:
        return skip("disabled", "RETRAINING_ENABLED is false")
    if alert.status == "resolved":
        return skip("resolved")
    trigger, why_not = _trigger(alert, now, settings)
    if trigger is None:
        return skip(why_not)
    seen = state.fingerprints.get(alert.fingerprint)
    if seen is not None and now - seen < SEEN_FOR:
        return skip("duplicate", f"this alert started a run at {seen.isoformat()}")
    if state.running is not None:
        return skip("already_running", run=state.running.name)
    if state.last_finished_at is not None:
        until = state.last_finished_at + timedelta(seconds=settings.cooldown_seconds)
        if now < until:
            return skip("cooldown", f"until {until.isoformat()}")
    started_today = runs_in_cap_window(state, now)
    if len(started_today) >= settings.daily_cap:
        until = min(started_today, default=now) + CAP_WINDOW
        return skip(
            "daily_cap",
            f"{len(started_today)} runs in 24 h (cap {settings.daily_cap}), until {until.isoformat()}",
        )
    kind: DecisionKind = "dry_run" if settings.dry_run else "started"
    return Decision(kind, trigger, alert.fingerprint, alert.alertname, *_model(alert))


def _trigger(alert: Alert, now: datetime, settings: ControllerSettings) -> tuple[Trigger | None, str]:
    """(the trigger reason, "") or (None, why this alert starts nothing)."""
    if alert.alertname in settings.trigger_alerts:
        return "quality_degraded", ""
    if alert.alertname not in settings.drift_alerts:
        return None, "not_a_trigger"
    if not settings.drift_trigger_enabled:
        return None, "drift_trigger_disabled"
    if (now - alert.startsAt).total_seconds() < settings.drift_min_age_seconds:
        return None, "drift_too_young"
    return "drift_persisted", ""


def _model(alert: Alert) -> tuple[str | None, str | None]:
    return alert.labels.get("model_name"), alert.labels.get("model_version")


def runs_in_cap_window(state: GuardState, now: datetime) -> list[datetime]:
    return [run.started_at for run in state.runs if now - run.started_at < CAP_WINDOW]


# ------------------------------------------------------------------------ state transitions
def record(state: GuardState, decision: Decision, now: datetime) -> GuardState:
    """The state after `decision`: always one more recent decision; a started run reserves its slot."""
    running = state.running
    runs = [run for run in state.runs if now - run.started_at < CAP_WINDOW]
    seen = {fp: at for fp, at in state.fingerprints.items() if now - at < SEEN_FOR}
    if decision.decision == "started":
        assert decision.run is not None, "a started decision names its run"
        running = RunningRun(
            name=decision.run,
            started_at=now,
            trigger=_as_trigger(decision.reason),
            alertname=decision.alertname,
            fingerprint=decision.fingerprint,
        )
        runs.append(RunRecord(**running.model_dump(exclude={"launched"})))
        seen[decision.fingerprint] = now
    return state.model_copy(
        update={
            "running": running,
            "runs": runs,
            "fingerprints": seen,
            "decisions": [*state.decisions, _record_of(decision, now)][-RECENT_DECISIONS:],
        }
    )


def would_run(state: GuardState, decision: Decision, now: datetime) -> GuardState:
    """A dry run's view for the rest of the same webhook: as if the run had started (never stored)."""
    return record(state, replace(decision, decision="started", run="dry-run"), now)


def confirm_launch(state: GuardState, run: str) -> GuardState:
    if state.running is None or state.running.name != run:
        return state
    return state.model_copy(update={"running": state.running.model_copy(update={"launched": True})})


def cancel_launch(state: GuardState, decision: Decision, detail: str) -> tuple[GuardState, Decision]:
    """The launch failed: give back what the reservation took; the decision becomes skipped/launch_failed."""
    failed = replace(decision, decision="skipped", reason="launch_failed", detail=detail)
    running = state.running
    if running is None or running.name != decision.run:
        return state, failed
    seen = dict(state.fingerprints)
    if seen.get(running.fingerprint) == running.started_at:
        del seen[running.fingerprint]
    records = list(state.decisions)
    for index in range(len(records) - 1, -1, -1):
        if records[index].run == decision.run and records[index].decision == "started":
            records[index] = _record_of(failed, records[index].at)
            break
    new = state.model_copy(
        update={
            "running": None,
            "runs": [run for run in state.runs if run.name != running.name],
            "fingerprints": seen,
            "decisions": records,
        }
    )
    return new, failed


def finish(state: GuardState, run: str, outcome: Outcome, detail: str, now: datetime) -> GuardState:
    """The run ended (or vanished): nothing runs now, and the cooldown starts."""
    if state.running is None or state.running.name != run:
        return state  # someone else recorded it already
    return state.model_copy(
        update={
            "running": None,
            "runs": [
                r.model_copy(update={"outcome": outcome, "finished_at": now}) if r.name == run else r
                for r in state.runs
            ],
            "last_run": run,
            "last_finished_at": now,
            "last_outcome": outcome,
            "last_outcome_detail": detail,
        }
    )


def _as_trigger(reason: str) -> Trigger:
    for trigger in TRIGGER_REASONS:
        if reason == trigger:
            return trigger
    raise ValueError(f"{reason!r} is not a trigger reason")


def _record_of(decision: Decision, at: datetime) -> DecisionRecord:
    return DecisionRecord(
        at=at,
        decision=decision.decision,
        reason=decision.reason,
        alertname=decision.alertname,
        fingerprint=decision.fingerprint,
        run=decision.run,
        model_name=decision.model_name,
        model_version=decision.model_version,
        detail=decision.detail,
    )
