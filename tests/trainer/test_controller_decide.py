"""The guard rails' order, as a pure function: the first rule that applies is the decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.trainer.test_controller import START, alert
from trainer.controller.config import ControllerSettings
from trainer.controller.decide import Decision, decide, record
from trainer.controller.state import GuardState
from trainer.controller.webhook import Alert

HOUR = timedelta(hours=1)


def settings(**overrides: Any) -> ControllerSettings:
    return ControllerSettings(**{"webhook_token": "t", "drift_trigger_enabled": True, **overrides})


def busy_state() -> GuardState:
    """A run going on, started by fingerprint `seen`, after another that ended 1 h ago; 3 runs today."""
    state = GuardState(last_finished_at=START - HOUR)
    for hours, fingerprint in ((5, "x"), (3, "y"), (0, "seen")):
        started = Decision(
            "started", "quality_degraded", fingerprint, "ModelQualityDegraded", run=f"r{hours}"
        )
        state = record(state, started, START - hours * HOUR)
    return state


CASES = [
    ("disabled beats everything", alert(status="resolved"), {"enabled": False}, "skipped/disabled"),
    ("resolved beats the trigger check", alert("PredictorDown", status="resolved"), {}, "skipped/resolved"),
    ("not a trigger", alert("PredictorDown"), {}, "skipped/not_a_trigger"),
    (
        "drift off",
        alert("DataDriftDetected"),
        {"drift_trigger_enabled": False},
        "skipped/drift_trigger_disabled",
    ),
    ("drift young", alert("DataDriftDetected", starts_at=START), {}, "skipped/drift_too_young"),
    ("duplicate beats running", alert(fingerprint="seen"), {}, "skipped/duplicate"),
    ("running beats cooldown", alert(), {}, "skipped/already_running"),
    ("dry run still checks the rails", alert(), {"dry_run": True}, "skipped/already_running"),
]


@pytest.mark.parametrize(("case", "body", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_first_rule_that_applies_decides(case: str, body: dict, overrides: dict, expected: str) -> None:
    decision = decide(busy_state(), Alert.model_validate(body), START, settings(**overrides))
    assert f"{decision.decision}/{decision.reason}" == expected


def test_cooldown_then_cap_then_dry_run_then_started() -> None:
    state = busy_state().model_copy(update={"running": None})
    fresh = Alert.model_validate(alert())
    assert decide(state, fresh, START, settings()).reason == "cooldown"
    assert decide(state, fresh, START, settings(cooldown_seconds=3600)).reason == "daily_cap"
    unlimited = settings(cooldown_seconds=3600, daily_cap=4)
    assert decide(state, fresh, START, unlimited).decision == "started"
    assert (
        decide(state, fresh, START, settings(cooldown_seconds=0, daily_cap=4, dry_run=True)).decision
        == "dry_run"
    )
    old_drift = Alert.model_validate(alert("PredictionDriftDetected", starts_at=START - HOUR))
    assert decide(state, old_drift, START, unlimited).reason == "drift_persisted"


def test_record_keeps_24_hours_of_runs_7_days_of_fingerprints_and_50_decisions() -> None:
    state = busy_state()
    other = Alert.model_validate(alert("Other"))
    later = record(state, decide(state, other, START, settings()), START + 20 * HOUR)
    assert [run.name for run in later.runs] == ["r3", "r0"]
    assert set(later.fingerprints) == {"x", "y", "seen"}
    week = record(later, decide(later, other, START, settings()), START + 7 * 24 * HOUR)
    assert week.fingerprints == {} and week.runs == []
    for _ in range(60):
        week = record(week, decide(week, other, START, settings()), START)
    assert len(week.decisions) == 50
