"""The controller's periodic rollback check against the session's real MLflow server: it runs every
interval, its verdicts are counted and shown in /v1/state, and a failing check (MLflow unreachable)
is counted as `failed` without stopping the loop. The verdicts themselves are the trainer's
(trainer.rollback.auto_rollback, tested with the trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scripts import local_stack as stack
from scripts.local_stack import wait_for
from tests.trainer import test_controller
from tests.trainer.test_controller import sample
from trainer.config import Settings

# The guard-rail tests' fixtures: a controller on a state file in tmp_path, served on 127.0.0.1.
home, start = test_controller.home, test_controller.start


def trainer_settings(tracking_uri: str, tmp_path: Path) -> Settings:
    return Settings(
        mlflow_tracking_uri=tracking_uri,
        model_name="controller-rollback-check",  # no such model: the check has nothing to judge
        ledger_database_url=f"sqlite:///{tmp_path / 'ledger.db'}",  # type: ignore[call-arg]
        mlflow_wait_seconds=0,
    )


def test_the_rollback_check_runs_every_interval_and_is_counted(
    start: Any, mlflow_server: stack.Process, tmp_path: Path
) -> None:
    before = sample("trainer_controller_rollback_checks_total", action="skipped")
    controller = start(
        trainer_settings=trainer_settings(mlflow_server.url, tmp_path), rollback_check_interval_seconds=0.05
    )
    wait_for(
        lambda: sample("trainer_controller_rollback_checks_total", action="skipped") >= before + 2,
        timeout=30,
        interval=0.05,
        what="two rollback checks",
    )
    check = controller.state()["rollback_check"]
    assert check["action"] == "skipped" and check["model_name"] == "controller-rollback-check"
    assert "no model holds alias 'champion'" in check["reason"]
    assert sample("trainer_controller_rollbacks_total", model_name="controller-rollback-check") == 0


def test_a_failing_rollback_check_is_counted_and_the_loop_goes_on(
    start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not after MLflow's backoff
    before = sample("trainer_controller_rollback_checks_total", action="failed")
    closed_port = f"http://127.0.0.1:{stack.free_port()}"
    controller = start(
        trainer_settings=trainer_settings(closed_port, tmp_path), rollback_check_interval_seconds=0.05
    )
    wait_for(
        lambda: sample("trainer_controller_rollback_checks_total", action="failed") >= before + 2,
        timeout=60,
        interval=0.05,
        what="two failed rollback checks",
    )
    assert controller.state()["rollback_check"]["action"] == "failed"
    assert controller.reasons(
        {
            "status": "resolved",
            "labels": {"alertname": "ModelQualityDegraded"},
            "startsAt": "2026-07-01T12:00:00Z",
            "fingerprint": "ok",
        }
    ) == ["skipped/resolved"]  # the controller still answers
