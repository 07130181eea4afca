"""The closed loop on real processes: quality alert → retrain controller → training run on the data plus the
labelled ledger rows → paired gate → promotion → predictors follow → later traffic is served better →
the alert resolves; the rollback check then keeps the new champion.

The loop has its own MLflow server and ledger database: the retraining moves the champion alias, which
the session's shared loop (tests/conftest.py) must keep. The evaluation rows after the switch (the later
half of summer 2017) are later than anything the new model was fitted on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from scripts import closed_loop
from scripts import labels as label_feed
from scripts import local_stack as stack
from scripts.traffic import hotel_windows, to_records

pytestmark = pytest.mark.e2e

LABEL_DELAY_SECONDS = 2
MODEL = "hotel-adr"


@dataclass(frozen=True)
class ClosedLoop:
    loop: stack.Loop
    ledger_url: str
    reports: dict[str, dict] = field(default_factory=dict)
    """The drift monitor's report per phase, for later tests of the module."""


@pytest.fixture(scope="module")
def closed(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: stack.PostgresServer
) -> Iterator[ClosedLoop]:
    """MLflow with a first champion, two predictors writing a PostgreSQL ledger, the monitoring trio and
    the retrain controller (local launcher: each run is a `trainer train` process)."""
    state: Path = tmp_path_factory.mktemp("closed-loop")
    ledger_url = postgres_server.create_database("closed_loop_ledger")
    with stack.local_stack(state) as s:
        mlflow = s.add(stack.start_mlflow(state))
        first = stack.run_cli(
            ["trainer", "train"], env={"MLFLOW_TRACKING_URI": mlflow.url, "LOG_FORMAT": "json"}
        )
        assert first.returncode == 0, first.stderr[-4000:]
        loop = stack.start_loop(
            s,
            mlflow,
            predictor_settings={
                "PREDICTOR_POLL_INTERVAL_SECONDS": "2",
                "PREDICTOR_LEDGER_DATABASE_URL": ledger_url,
            },
            controller_settings={
                "TRAINER_LEDGER_DATABASE_URL": ledger_url,
                "TRAINER_LABEL_DELAY_SECONDS": str(LABEL_DELAY_SECONDS),
                "RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS": "2",
            },
        )
        yield ClosedLoop(loop, ledger_url)


def labelled_window(loop: stack.Loop, mode: str) -> tuple[label_feed.LabelledTraffic, float]:
    """Every row of a window with ids (in arrival order), then their labels once the ledger has them."""
    started = time.time()
    rows = len(hotel_windows().frame(mode))
    before = label_feed.ledger_counts(loop.predictor_urls)["predictor_ledger_written_rows_total"]
    sent = label_feed.send(loop.predictor_urls, mode, rows=rows, prefix=f"{mode}-{uuid.uuid4().hex[:8]}")
    assert sent.failures == [] and len(sent.ids) == rows
    stack.wait_for(
        lambda: (
            label_feed.ledger_counts(loop.predictor_urls)["predictor_ledger_written_rows_total"] - before
            >= rows
        ),
        timeout=60,
        what=f"{rows} rows written to the ledger",
    )
    last_sent = time.time()
    stack.wait_for(lambda: time.time() - last_sent > LABEL_DELAY_SECONDS, what="the label delay")
    totals = label_feed.post_labels(loop.predictor_urls[0], sent.labels())
    assert totals["matched"] == rows
    return sent, started


def quality(loop: stack.Loop, ledger_url: str, since: float) -> dict[str, dict]:
    """Live quality per model version (the drift monitor's run over the window since `since`)."""
    report = monitor(loop, ledger_url, since)
    return {v["model_version"]: v for v in report["quality"]["versions"]}


def monitor(loop: stack.Loop, ledger_url: str, since: float) -> dict:
    """One drift-monitor run (drift and quality) over the window since `since`: its JSON report."""
    code, report, log = stack.run_drift_monitor(
        loop,
        window_seconds=time.time() - since + 1,
        env={
            "DRIFT_MONITOR_LEDGER_DATABASE_URL": ledger_url,
            "DRIFT_MONITOR_LABEL_DELAY_SECONDS": str(LABEL_DELAY_SECONDS),
            "DRIFT_MONITOR_QUALITY_WINDOW_SECONDS": str(int(time.time() - since) + 1),
        },
    )
    assert code == 0 and report is not None and report["quality"] is not None, log[-4000:]
    return report


def test_quality_alert_retrains_promotes_and_later_traffic_is_served_better(closed: ClosedLoop) -> None:
    from mlflow import MlflowClient

    loop, ledger = closed.loop, closed.ledger_url
    client = MlflowClient(loop.mlflow.url)
    old = closed_loop.champion_version(loop.mlflow.url)

    # Production sees the first half of summer 2017 and its true prices: the champion is biased low.
    _, early_started = labelled_window(loop, "summer_early")
    closed.reports["summer_early"] = early = monitor(loop, ledger, early_started)
    assert {v["model_version"]: v for v in early["quality"]["versions"]}[old]["degraded"] is True
    stack.wait_for_alert(loop, "ModelQualityDegraded", timeout=240)

    # Alertmanager → controller → one training run on the data plus the labelled ledger rows.
    state = closed_loop.wait_for_run_started(loop, runs_before=0, timeout=120)
    assert state["running"] is None or state["running"]["trigger"] == "quality_degraded"
    state = closed_loop.wait_for_run_finished(loop, timeout=900)
    assert state["last_outcome"] == "succeeded", state

    new = closed_loop.champion_version(loop.mlflow.url)
    assert new != old, "the gate kept the old champion"
    tags = closed_loop.version_tags(loop.mlflow.url, new)
    assert tags["gate"] == "paired-recent-labels", tags
    assert float(tags["gate_challenger_mae"]) < float(tags["gate_champion_mae"])
    assert float(tags["gate_mae_diff_high"]) < 0, "promoted without the interval below 0"
    assert client.get_model_version_by_alias(MODEL, "previous").version == old
    assert tags["reference_source"] == "ledger"
    assert tags["ledger_fit_until"]

    # The predictors follow the alias; the later half of the summer is served by the new champion.
    closed_loop.wait_for_served(loop, new, timeout=120)
    _, late_started = labelled_window(loop, "summer_late")
    live = quality(loop, ledger, late_started)
    assert set(live) == {new}, "the later window was served by the old champion too"
    before = closed_loop.version_mae(loop.mlflow.url, old, "summer_late")
    after = live[new]["mae"]
    assert after < 0.85 * before, f"live MAE on later traffic: before {before:.2f}, after {after:.2f}"

    # The quality series of the old version are gone from the Pushgateway: the alert resolves.
    stack.wait_for(
        lambda: not stack.prometheus_alerts(loop.prometheus.url, "ModelQualityDegraded"),  # type: ignore[union-attr]
        timeout=180,
        interval=1,
        what="ModelQualityDegraded resolved",
    )
    # The rollback check compares the new champion's live MAE with the old one's before the switch: kept.
    stack.wait_for(
        lambda: client.get_model_version(MODEL, new).tags.get("rollback_check") == "kept",
        timeout=120,
        interval=1,
        what="the rollback check keeping the new champion",
    )
    assert closed_loop.champion_version(loop.mlflow.url) == new


def test_the_new_champion_measures_drift_from_what_it_learned(closed: ClosedLoop) -> None:
    """The reference rebase: the retrained version's drift reference is the ledger rows it was fitted and
    calibrated on (the oldest labelled rows of the early summer), so that traffic, sent again, is no drift
    for it, while the same window was drift against the old champion's reference (the 2015-17 bookings).
    Later traffic can still drift from it (a new month is a new month): the drift trigger is off by default."""
    from mlflow import MlflowClient

    loop = closed.loop
    assert "summer_early" in closed.reports, "the closed-loop test did not run"
    client = MlflowClient(loop.mlflow.url)
    new = closed_loop.champion_version(loop.mlflow.url)
    old = client.get_model_version_by_alias(MODEL, "previous").version
    before = {v["model_version"]: v for v in closed.reports["summer_early"]["versions"]}
    assert before[old]["drift_detected"] is True, before[old]

    tags = client.get_run(client.get_model_version(MODEL, new).run_id).data.tags
    learned = int(tags["ledger_fit_rows"]) + int(tags["ledger_calibration_rows"])
    windows = hotel_windows()
    rows = windows.frame("summer_early").head(learned)
    records, actuals = to_records(rows, drop=(windows.target,)), rows[windows.target].astype(float).tolist()
    started = time.time()
    sent = label_feed.send_records(
        loop.predictor_urls, records, actuals, prefix=f"learned-{uuid.uuid4().hex[:8]}"
    )
    assert sent.failures == [] and len(sent.ids) == learned
    after = {v["model_version"]: v for v in monitor(loop, closed.ledger_url, started)["versions"]}
    assert set(after) == {new}
    assert after[new]["enough_data"] is True and after[new]["drift_detected"] is False, after[new]


def test_alertmanager_repeats_and_drift_alerts_start_nothing(closed: ClosedLoop) -> None:
    """The same alert again (Alertmanager's repeat: same fingerprint) is a duplicate; drift alerts are
    not triggers by default. Neither starts a run."""
    loop = closed.loop
    state = closed_loop.controller_state(loop)
    runs = len(state["runs"])
    fingerprint = next(iter(state["fingerprints"]))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def alert(name: str, fp: str) -> dict:
        return {
            "status": "firing",
            "labels": {"alertname": name, "model_name": MODEL, "model_version": "1"},
            "annotations": {},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": fp,
        }

    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "retraining-webhook",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": loop.alertmanager.url,  # type: ignore[union-attr]
        "alerts": [
            alert("ModelQualityDegraded", fingerprint),
            alert("DataDriftDetected", uuid.uuid4().hex[:16]),
        ],
    }
    response = httpx.post(
        f"{loop.controller.url}/v1/alerts",  # type: ignore[union-attr]
        json=body,
        headers={"Authorization": f"Bearer {loop.controller_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    decisions = {d["alertname"]: d for d in response.json()["decisions"]}
    assert decisions["ModelQualityDegraded"]["reason"] == "duplicate"
    assert decisions["DataDriftDetected"]["reason"] == "drift_trigger_disabled"
    assert all(d["decision"] == "skipped" for d in decisions.values())
    assert len(closed_loop.controller_state(loop)["runs"]) == runs
    unauthorised = httpx.post(f"{loop.controller.url}/v1/alerts", json=body, timeout=10)  # type: ignore[union-attr]
    assert unauthorised.status_code == 401


def test_a_failed_run_is_reported_and_the_champion_untouched(closed: ClosedLoop, tmp_path: Path) -> None:
    """A run on bad data (a dataset file that does not exist): the controller records the failure (state,
    `trainer_controller_retrain_runs_total{outcome="failed"}`) and nobody moves the champion."""
    loop = closed.loop
    champion = closed_loop.champion_version(loop.mlflow.url)
    token = uuid.uuid4().hex
    controller = stack.start_controller(
        tmp_path,
        loop.mlflow.url,
        token=token,
        settings={
            "RETRAINING_TRAIN_COMMAND": f"{stack.VENV_BIN / 'trainer'} train --dataset {tmp_path / 'missing.csv'}",
            "RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS": "0",
        },
    )
    try:
        body = {
            "version": "4",
            "status": "firing",
            "receiver": "retraining-webhook",
            "groupLabels": {"alertname": "ModelQualityDegraded"},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://127.0.0.1",
            "groupKey": '{}:{alertname="ModelQualityDegraded"}',
            "truncatedAlerts": 0,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": "ModelQualityDegraded",
                        "model_name": MODEL,
                        "model_version": champion,
                    },
                    "annotations": {},
                    "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": uuid.uuid4().hex[:16],
                }
            ],
        }
        headers = {"Authorization": f"Bearer {token}"}
        response = httpx.post(f"{controller.url}/v1/alerts", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert [d["decision"] for d in response.json()["decisions"]] == ["started"]

        def finished() -> dict | None:
            state = httpx.get(f"{controller.url}/v1/state", headers=headers, timeout=5).json()
            return state if state["running"] is None else None

        state = stack.wait_for(finished, timeout=120, interval=1, what="the failing run to be seen as ended")
        assert state["last_outcome"] == "failed", state
        metrics = httpx.get(f"{controller.url}/metrics", timeout=5).text
        assert 'trainer_controller_retrain_runs_total{outcome="failed"} 1.0' in metrics
    finally:
        controller.stop()
    assert closed_loop.champion_version(loop.mlflow.url) == champion
