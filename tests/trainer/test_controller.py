"""The retrain controller's guard rails through real HTTP: the app under uvicorn on 127.0.0.1, the local
launcher starting real processes, the state in a real file. A test clock stands in for hours passing
(cooldown, daily cap, drift age); everything else is real. Runs that must stay "running" wait for a
release file the test writes (the exit code in it), so no test sleeps: each polls for its condition.
"""

from __future__ import annotations

import shlex
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY

from scripts.local_stack import wait_for
from trainer.config import Settings
from trainer.controller.app import create_app
from trainer.controller.config import ControllerSettings
from trainer.controller.service import build_service

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- helpers
class Clock:
    """The controller's `now`, moved by the test."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def waiting_command(release: Path) -> str:
    """A run that lasts until `release` exists, then exits with the code written in it."""
    script = 'until [ -e "$0" ]; do sleep 0.02; done; exit "$(cat "$0")"'
    return f"sh -c {shlex.quote(script)} {shlex.quote(str(release))}"


def alert(
    name: str = "ModelQualityDegraded",
    fingerprint: str | None = None,
    status: str = "firing",
    starts_at: datetime = START,
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "model_name": "hotel-adr", "model_version": "1", **labels},
        "annotations": {"summary": "…"},
        "startsAt": starts_at.isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint or uuid.uuid4().hex[:16],
    }


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), as it sends it."""
    return {
        "version": "4",
        "groupKey": '{}/{alertname=~"..."}:{alertname="ModelQualityDegraded"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "retraining-webhook",
        "groupLabels": {"alertname": str(alerts[0]["labels"].get("alertname"))},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Controller:
    """One app instance, served by uvicorn in a thread on a free port."""

    settings: ControllerSettings
    clock: Clock
    trainer_settings: Settings | None = None
    server: uvicorn.Server = field(init=False)
    thread: threading.Thread = field(init=False)
    url: str = field(init=False)

    def __post_init__(self) -> None:
        app = create_app(self.settings, build_service(self.settings, clock=self.clock), self.trainer_settings)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, interval=0.01, what="the controller to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/alerts", json=body, headers=AUTH if headers is None else headers)

    def decide(self, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.post(webhook(*alerts))
        assert response.status_code == 200, response.text
        decisions: list[dict[str, Any]] = response.json()["decisions"]
        return decisions

    def reasons(self, *alerts: dict[str, Any]) -> list[str]:
        return [f"{d['decision']}/{d['reason']}" for d in self.decide(*alerts)]

    def state(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/state", headers=AUTH)
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        return state

    def wait_until_idle(self) -> dict[str, Any]:
        """Until the status check has seen the run end; the state then."""
        return wait_for(
            lambda: (s := self.state())["running"] is None and s,
            timeout=20,
            interval=0.02,
            what="the run to be seen as ended",
        )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def controller_settings(home: Path, **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {
        "webhook_token": TOKEN,
        "launcher": "local",
        "state_file": home / "state.json",
        "run_log_dir": home / "runs",
        "train_command": "sh -c 'exit 0'",
        "status_interval_seconds": 0.02,
        "rollback_check_interval_seconds": 0,
        **overrides,
    }
    return ControllerSettings(**values)


@pytest.fixture
def start(home: Path) -> Iterator[Any]:
    """start(clock=..., **settings) → a running Controller on `home`'s state file; all stopped at the end."""
    started: list[Controller] = []

    def _start(
        clock: Clock | None = None, trainer_settings: Settings | None = None, **overrides: Any
    ) -> Controller:
        controller = Controller(controller_settings(home, **overrides), clock or Clock(), trainer_settings)
        started.append(controller)
        return controller

    yield _start
    for controller in started:
        controller.stop()


# ------------------------------------------------------------------------------ tests
def test_a_quality_alert_starts_one_run_and_its_repeats_are_duplicates(start: Any, home: Path) -> None:
    clock = Clock()
    controller = start(clock, cooldown_seconds=0)
    first = alert(fingerprint="a1")
    [decision] = controller.decide(first)
    assert (decision["decision"], decision["reason"]) == ("started", "quality_degraded")
    assert decision["run"] == "retrain-20260701120000" and decision["model_version"] == "1"
    state = controller.wait_until_idle()
    assert state["last_outcome"] == "succeeded" and state["last_run"] == decision["run"]
    assert (home / "runs" / "retrain-20260701120000.exit").read_text().strip() == "0"

    # Alertmanager repeats the alert (same fingerprint): never a second run, for 7 days.
    clock.advance(hours=4)
    assert controller.reasons(first) == ["skipped/duplicate"]
    clock.advance(days=7)
    assert controller.reasons(first) == ["started/quality_degraded"]
    assert [run["fingerprint"] for run in controller.state()["runs"]] == ["a1"]  # the first left the 24 h


def test_several_alerts_in_one_webhook_start_at_most_one_run(start: Any, home: Path) -> None:
    controller = start(train_command=waiting_command(home / "release"))
    reasons = controller.reasons(alert(fingerprint="b1"), alert(fingerprint="b2"), alert("Other"))
    assert reasons == ["started/quality_degraded", "skipped/already_running", "skipped/not_a_trigger"]
    state = controller.state()
    assert state["running"]["fingerprint"] == "b1" and list(state["fingerprints"]) == ["b1"]
    (home / "release").write_text("0")
    controller.wait_until_idle()


def test_concurrent_webhooks_never_start_two_runs(start: Any, home: Path) -> None:
    """Alertmanager sends several groups at once, to two controllers on one state file (a rollout's old
    and new pod): one lock in each process, the flock on the file between them."""
    controllers = [start(train_command=waiting_command(home / "release")) for _ in range(2)]
    controller = controllers[0]
    bodies = [webhook(alert(fingerprint=f"c{i}", model_version=str(i))) for i in range(12)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda i: controllers[i % 2].post(bodies[i]), range(len(bodies))))
    decisions = [r.json()["decisions"][0] for r in responses]
    assert sorted(d["reason"] for d in decisions) == ["already_running"] * 11 + ["quality_degraded"]
    assert len(controller.state()["runs"]) == 1
    assert len(list((home / "runs").glob("*.log"))) == 1  # one process started
    (home / "release").write_text("0")
    controller.wait_until_idle()


def test_cooldown_after_a_run(start: Any) -> None:
    clock = Clock()
    controller = start(clock, cooldown_seconds=6 * 3600)
    assert controller.reasons(alert()) == ["started/quality_degraded"]
    finished = controller.wait_until_idle()["last_finished_at"]
    clock.advance(hours=5, minutes=59)
    [decision] = controller.decide(alert())
    assert decision["reason"] == "cooldown"
    until = datetime.fromisoformat(finished) + timedelta(hours=6)
    assert decision["detail"] == f"until {until.isoformat()}"
    assert controller.state()["guard_rails"]["cooldown_until"] == until.isoformat()
    clock.advance(minutes=1)
    assert controller.reasons(alert()) == ["started/quality_degraded"]  # a new alert after the cooldown
    controller.wait_until_idle()


def test_daily_cap_counts_runs_started_in_the_last_24_hours(start: Any) -> None:
    clock = Clock()
    controller = start(clock, cooldown_seconds=0, daily_cap=2)
    for _ in range(2):
        assert controller.reasons(alert()) == ["started/quality_degraded"]
        controller.wait_until_idle()
        clock.advance(hours=1)
    [decision] = controller.decide(alert())
    assert decision["reason"] == "daily_cap" and "2 runs in 24 h (cap 2)" in decision["detail"]
    assert controller.state()["guard_rails"]["runs_in_last_24h"] == 2
    clock.advance(hours=22)  # the first run is now 24 h old
    assert controller.reasons(alert()) == ["started/quality_degraded"]
    controller.wait_until_idle()


def test_kill_switch_skips_everything_and_starts_nothing(start: Any, home: Path) -> None:
    before = sample("trainer_controller_retrain_decisions_total", decision="skipped", reason="disabled")
    controller = start(enabled=False)
    assert controller.reasons(alert(), alert("DataDriftDetected")) == ["skipped/disabled"] * 2
    state = controller.state()
    assert state["runs"] == [] and state["fingerprints"] == {} and state["guard_rails"]["enabled"] is False
    assert not (home / "runs").exists()
    assert (
        sample("trainer_controller_retrain_decisions_total", decision="skipped", reason="disabled")
        == before + 2
    )


def test_dry_run_records_what_it_would_do_and_consumes_nothing(start: Any, home: Path) -> None:
    before = sample(
        "trainer_controller_retrain_decisions_total", decision="dry_run", reason="quality_degraded"
    )
    controller = start(dry_run=True)
    repeated = alert(fingerprint="d1")
    reasons = controller.reasons(repeated, alert(fingerprint="d2"))
    assert reasons == ["dry_run/quality_degraded", "skipped/already_running"]  # as a real run would
    assert controller.reasons(repeated) == ["dry_run/quality_degraded"]  # not a duplicate: nothing consumed
    state = controller.state()
    assert state["running"] is None and state["runs"] == [] and state["fingerprints"] == {}
    assert [d["decision"] for d in state["decisions"]] == ["dry_run", "skipped", "dry_run"]
    assert not (home / "runs").exists()
    after = sample(
        "trainer_controller_retrain_decisions_total", decision="dry_run", reason="quality_degraded"
    )
    assert after == before + 2


def test_drift_alerts_start_a_run_only_when_enabled_and_old_enough(start: Any, home: Path) -> None:
    clock = Clock()
    young = alert("DataDriftDetected", starts_at=START - timedelta(minutes=59))
    old = alert("PredictionDriftDetected", starts_at=START - timedelta(hours=1))
    assert start(clock).reasons(young, old) == ["skipped/drift_trigger_disabled"] * 2
    enabled = start(clock, drift_trigger_enabled=True, drift_min_age_seconds=3600)
    assert enabled.reasons(young, old) == ["skipped/drift_too_young", "started/drift_persisted"]
    assert enabled.state()["runs"][0]["trigger"] == "drift_persisted"
    enabled.wait_until_idle()


def test_resolved_and_unknown_alerts_start_nothing(start: Any) -> None:
    controller = start()
    reasons = controller.reasons(alert(status="resolved"), alert("PredictorDown"))
    assert reasons == ["skipped/resolved", "skipped/not_a_trigger"]
    assert controller.state()["runs"] == []


def test_a_failed_run_is_reported(start: Any, home: Path) -> None:
    before = sample("trainer_controller_retrain_runs_total", outcome="failed")
    controller = start(train_command="sh -c 'echo bad data >&2; exit 1'")
    [decision] = controller.decide(alert())
    state = controller.wait_until_idle()
    assert state["last_outcome"] == "failed" and state["last_run"] == decision["run"]
    assert state["last_outcome_detail"].startswith("exit code 1")
    assert state["runs"][0]["outcome"] == "failed"
    assert "bad data" in (home / "runs" / f"{decision['run']}.log").read_text()
    assert sample("trainer_controller_retrain_runs_total", outcome="failed") == before + 1
    metrics = httpx.get(f"{controller.url}/metrics").text
    assert "trainer_controller_retrain_running 0.0" in metrics


def test_a_restarted_controller_keeps_its_state_and_learns_how_the_run_ended(start: Any, home: Path) -> None:
    """A new app instance on the same state file: the running run, the fingerprint and the cap survive,
    and the new instance learns the outcome of the run the old one started."""
    clock = Clock()
    release = home / "release"
    first = start(clock, train_command=waiting_command(release), cooldown_seconds=3600)
    repeated = alert(fingerprint="r1")
    [started] = first.decide(repeated)
    first.stop()

    second = start(clock, train_command=waiting_command(release), cooldown_seconds=3600)
    state = second.state()
    assert state["running"]["name"] == started["run"] and state["running"]["launched"] is True
    assert second.reasons(repeated) == ["skipped/duplicate"]
    assert second.reasons(alert()) == ["skipped/already_running"]
    release.write_text("1")
    state = second.wait_until_idle()
    assert (state["last_run"], state["last_outcome"]) == (started["run"], "failed")
    assert second.reasons(alert()) == ["skipped/cooldown"]  # counted from the end the new instance saw


def test_a_launch_failure_is_a_decision_answered_200_that_consumes_nothing(start: Any, home: Path) -> None:
    before = sample("trainer_controller_retrain_decisions_total", decision="skipped", reason="launch_failed")
    (home / "not-a-dir").write_text("")
    controller = start(run_log_dir=home / "not-a-dir" / "runs")  # mkdir fails: nothing can start
    [decision] = controller.decide(alert(fingerprint="f1"))
    assert (decision["decision"], decision["reason"]) == ("skipped", "launch_failed")
    assert decision["detail"].startswith("cannot start `sh -c exit 0`")
    state = controller.state()
    assert state["running"] is None and state["runs"] == [] and state["fingerprints"] == {}
    assert [(d["decision"], d["reason"]) for d in state["decisions"]] == [("skipped", "launch_failed")]
    after = sample("trainer_controller_retrain_decisions_total", decision="skipped", reason="launch_failed")
    assert after == before + 1


def test_webhook_and_state_need_the_token(start: Any, home: Path) -> None:
    controller = start()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        response = controller.post(webhook(alert()), headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert httpx.get(f"{controller.url}/v1/state", headers=headers).status_code == 401
    assert not (home / "state.json").exists() and not (home / "runs").exists()
    assert httpx.get(f"{controller.url}/healthz").status_code == 200  # probes and metrics stay open
    assert httpx.get(f"{controller.url}/readyz").status_code == 200
    assert httpx.get(f"{controller.url}/metrics").status_code == 200


MALFORMED = [
    (b"{not json", "body"),
    ({"version": "3", "status": "firing", "receiver": "r", "alerts": [alert()]}, "version"),
    (webhook(alert()) | {"alerts": []}, "alerts"),
    (webhook({k: v for k, v in alert().items() if k != "fingerprint"}), "alerts.0.fingerprint"),
    (webhook(alert() | {"fingerprint": "../../etc"}), "alerts.0.fingerprint"),
    (webhook(alert() | {"startsAt": "2026-07-01T12:00:00"}), "alerts.0.startsAt"),
    (webhook(alert() | {"status": "pending"}), "alerts.0.status"),
    (webhook(alert() | {"labels": {"model_name": "hotel-adr"}}), "alerts.0.labels"),
    (webhook(alert() | {"labels": {"alertname": 3}}), "alerts.0.labels.alertname"),
]


@pytest.mark.parametrize(("body", "field_name"), MALFORMED, ids=[f for _, f in MALFORMED])
def test_a_malformed_webhook_is_422_naming_the_field_and_changes_nothing(
    start: Any, home: Path, body: object, field_name: str
) -> None:
    controller = start()
    controller.decide(alert(fingerprint="m0"))  # some state to keep
    controller.wait_until_idle()
    state_before = (home / "state.json").read_bytes()
    decisions_before = sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "trainer_controller_retrain_decisions"
        for s in metric.samples
        if s.name.endswith("_total")
    )
    if isinstance(body, bytes):
        response = httpx.post(f"{controller.url}/v1/alerts", content=body, headers=AUTH)
    else:
        response = controller.post(body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert field_name in [d["loc"] for d in error["detail"]], error
    assert error["error"].startswith("invalid webhook: ") and field_name in error["error"]
    assert "Traceback" not in response.text
    assert (home / "state.json").read_bytes() == state_before
    decisions_after = sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "trainer_controller_retrain_decisions"
        for s in metric.samples
        if s.name.endswith("_total")
    )
    assert decisions_after == decisions_before


def test_a_corrupt_state_file_is_never_reset(start: Any, home: Path) -> None:
    """Starting over would forget the cooldown and the cap: 503 (Alertmanager retries), file untouched."""
    (home / "state.json").write_text('{"runs": "nonsense"}')
    controller = start()
    response = controller.post(webhook(alert()))
    assert response.status_code == 503 and response.headers["Retry-After"] == "10"
    assert "holds no valid retraining state (runs:" in response.json()["error"]
    assert httpx.get(f"{controller.url}/readyz").status_code == 503
    assert (home / "state.json").read_text() == '{"runs": "nonsense"}'
    assert not (home / "runs").exists()


def test_unknown_routes_and_methods_answer_json_errors(start: Any) -> None:
    controller = start()
    assert httpx.get(f"{controller.url}/v1/nothing").json() == {"error": "Not Found"}
    assert httpx.get(f"{controller.url}/v1/alerts", headers=AUTH).status_code == 405
