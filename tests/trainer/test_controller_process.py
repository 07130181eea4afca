"""`trainer controller` as a real process: stopped with SIGTERM while its run goes on, started again on
the same state file, it still knows the run and learns how it ended; bad settings exit 2, the kubernetes
launcher outside a pod exits 1, each with one line and no traceback."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx

from scripts import local_stack as stack
from tests.trainer.test_controller import alert, waiting_command, webhook

TOKEN = uuid.uuid4().hex
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
UNUSED_MLFLOW = "http://127.0.0.1:9"  # the controller itself never calls MLflow without a ledger


def start(state_dir: Path, **settings: str) -> stack.Process:
    """The local stack's controller (state file and run logs under `state_dir/retrain-controller`)."""
    return stack.start_controller(
        state_dir,
        UNUSED_MLFLOW,
        token=TOKEN,
        settings={
            "RETRAINING_STATUS_INTERVAL_SECONDS": "0.05",
            "RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS": "0",
            **settings,
        },
    )


def state(controller: stack.Process) -> dict:
    response = httpx.get(f"{controller.url}/v1/state", headers=HEADERS, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def decide(controller: stack.Process, *alerts: dict) -> list[str]:
    response = httpx.post(f"{controller.url}/v1/alerts", json=webhook(*alerts), headers=HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    return [f"{d['decision']}/{d['reason']}" for d in response.json()["decisions"]]


def test_a_restarted_controller_process_keeps_its_state_and_learns_the_outcome(tmp_path: Path) -> None:
    release = tmp_path / "release"
    command = waiting_command(release)
    first = start(tmp_path, RETRAINING_TRAIN_COMMAND=command)
    try:
        repeated = alert(fingerprint="p1")
        assert decide(first, repeated) == ["started/quality_degraded"]
        run = state(first)["running"]["name"]
    except BaseException:
        release.write_text("1")
        raise
    finally:
        assert first.stop() == 0, first.log_tail()  # a drained SIGTERM is a clean exit
    pid = int((tmp_path / "retrain-controller" / "runs" / f"{run}.pid").read_text())
    os.kill(pid, 0)  # the run outlived its controller (its own session)

    second = start(tmp_path, RETRAINING_TRAIN_COMMAND=command)
    try:
        assert state(second)["running"]["name"] == run
        assert decide(second, repeated, alert()) == ["skipped/duplicate", "skipped/already_running"]
        release.write_text("1")
        ended = stack.wait_for(
            lambda: (s := state(second))["running"] is None and s,
            timeout=20,
            interval=0.05,
            what="the new controller to see the run end",
        )
        assert (ended["last_run"], ended["last_outcome"]) == (run, "failed")
        metrics = httpx.get(f"{second.url}/metrics", timeout=5).text
        assert 'trainer_controller_retrain_runs_total{outcome="failed"} 1.0' in metrics
        assert "retrain run " + run + " failed: exit code 1" in second.log_tail(200)
    finally:
        second.stop()
        if not release.exists():
            release.write_text("1")  # never leave the waiting run behind
    assert not (tmp_path / "retrain-controller.log").read_text().count("Traceback")


def run_controller(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINING_")}
    return subprocess.run(
        [str(stack.VENV_BIN / "trainer"), "controller"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_invalid_settings_exit_2_with_one_line() -> None:
    result = run_controller({"RETRAINING_DAILY_CAP": "-1"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "trainer: invalid settings: RETRAINING_DAILY_CAP: Input should be greater than or equal to 0; "
        "RETRAINING_WEBHOOK_TOKEN: Field required"
    ]
    result = run_controller({"RETRAINING_WEBHOOK_TOKEN": " "})
    assert (result.returncode, result.stderr) == (
        2,
        "trainer: invalid settings: RETRAINING_WEBHOOK_TOKEN: Value error, must not be empty\n",
    )
    result = run_controller({"RETRAINING_WEBHOOK_TOKEN": TOKEN, "RETRAINING_LAUNCHER": "kubernetes"})
    assert (result.returncode, result.stderr) == (
        2,
        "trainer: invalid settings: settings: Value error, RETRAINING_LAUNCHER=kubernetes needs "
        "RETRAINING_STATE_CONFIGMAP and RETRAINING_TRAINER_CRONJOB\n",
    )


def test_the_kubernetes_launcher_outside_a_pod_exits_1() -> None:
    result = run_controller(
        {
            "RETRAINING_WEBHOOK_TOKEN": TOKEN,
            "RETRAINING_LAUNCHER": "kubernetes",
            "RETRAINING_STATE_CONFIGMAP": "mlops-retrain-controller",
            "RETRAINING_TRAINER_CRONJOB": "mlops-trainer",
            "KUBERNETES_SERVICE_HOST": "",
            "LOG_FORMAT": "text",
        }
    )
    assert result.returncode == 1
    assert "not running in a Kubernetes pod" in result.stderr and "Traceback" not in result.stderr
