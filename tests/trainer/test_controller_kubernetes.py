"""The controller's Kubernetes side against a double of the API server: a real HTTP server that keeps
ConfigMaps, a CronJob, Jobs and Events as the API's JSON (resourceVersions, 404/409 Status bodies),
reached through the real kubernetes client. The cluster tests (tests/cluster) prove the same on a real
API server with the chart's RBAC.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import REGISTRY

from tests.trainer.test_controller import START, Clock, alert, webhook
from trainer.controller.config import ControllerSettings
from trainer.controller.decide import Decision
from trainer.controller.launchers import KubernetesLauncher
from trainer.controller.service import RetrainService, build_service
from trainer.controller.state import ConfigMapStateStore, GuardState, StateStoreError
from trainer.controller.webhook import Webhook

NAMESPACE = "mlops"
CONFIGMAP = "mlops-retrain-controller"
CRONJOB = "mlops-trainer"
TEMPLATE_SPEC = {
    "backoffLimit": 0,
    "activeDeadlineSeconds": 3600,
    "ttlSecondsAfterFinished": 86400,
    "template": {
        "metadata": {"labels": {"app.kubernetes.io/component": "trainer"}},
        "spec": {
            "serviceAccountName": "mlops-trainer",
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [
                {
                    "name": "trainer",
                    "image": "mlops-trainer:test",
                    "args": ["train"],
                    "env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlops-mlflow:5000"}],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                }
            ],
        },
    },
}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeApi:
    """The few API paths the controller uses, with the API server's answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = 1
        self.configmaps: dict[str, dict[str, Any]] = {
            CONFIGMAP: {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": CONFIGMAP,
                    "namespace": NAMESPACE,
                    "uid": "cm-uid",
                    "resourceVersion": "1",
                },
            }
        }
        self.cronjobs: dict[str, dict[str, Any]] = {
            CRONJOB: {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": CRONJOB, "namespace": NAMESPACE, "uid": "cronjob-uid"},
                "spec": {
                    "schedule": "0 3 * * 0",
                    "suspend": True,
                    "jobTemplate": {
                        "metadata": {"labels": {"app.kubernetes.io/component": "trainer"}},
                        "spec": TEMPLATE_SPEC,
                    },
                },
            }
        }
        self.jobs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.conflicts = 0

    def answer(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        with self.lock:
            if parts[:4] == ["api", "v1", "namespaces", NAMESPACE] and parts[4] == "configmaps":
                return self._configmap(method, parts[5], body)
            if parts[:5] == ["apis", "batch", "v1", "namespaces", NAMESPACE] and parts[5] == "cronjobs":
                if parts[6] in self.cronjobs:
                    return 200, self.cronjobs[parts[6]]
                return 404, status(404, "NotFound", f'cronjobs.batch "{parts[6]}" not found')
            if parts[:5] == ["apis", "batch", "v1", "namespaces", NAMESPACE] and parts[5] == "jobs":
                return self._job(method, parts[6] if len(parts) > 6 else None, body)
            if (
                parts[:4] == ["api", "v1", "namespaces", NAMESPACE]
                and parts[4] == "events"
                and method == "POST"
            ):
                assert body is not None
                event = {**body, "metadata": {**body["metadata"], "name": f"{CONFIGMAP}.{len(self.events)}"}}
                self.events.append(event)
                return 201, event
        return 404, status(404, "NotFound", f"the server could not find {path}")

    def _configmap(self, method: str, name: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        current = self.configmaps.get(name)
        if current is None:
            return 404, status(404, "NotFound", f'configmaps "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(current)
        assert method == "PUT" and body is not None
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            self.conflicts += 1
            message = f'Operation cannot be fulfilled on configmaps "{name}": the object has been modified'
            return 409, status(409, "Conflict", message)
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.configmaps[name] = body
        return 200, copy.deepcopy(body)

    def _job(self, method: str, name: str | None, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if method == "POST":
            assert body is not None
            name = body["metadata"]["name"]
            if name in self.jobs:
                return 409, status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            self.jobs[name] = {**body, "status": {}}
            return 201, self.jobs[name]
        if name in self.jobs:
            return 200, self.jobs[name]
        return 404, status(404, "NotFound", f'jobs.batch "{name}" not found')

    def state(self) -> dict[str, Any]:
        return json.loads(self.configmaps[CONFIGMAP].get("data", {}).get("state.json", "{}"))

    def finish_job(self, name: str, condition: str, reason: str, message: str) -> None:
        with self.lock:
            self.jobs[name]["status"] = {
                "conditions": [{"type": condition, "status": "True", "reason": reason, "message": message}]
            }


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, k8s.ApiClient]]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            code, answer = fake.answer(self.command, self.path.split("?")[0], body)
            payload = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    with k8s.ApiClient(configuration) as api_client:
        yield fake, api_client
    server.shutdown()


def kube_service(api_client: k8s.ApiClient, clock: Clock | None = None, **overrides: Any) -> RetrainService:
    settings = ControllerSettings(
        webhook_token="t",
        launcher="kubernetes",
        state_configmap=CONFIGMAP,
        trainer_cronjob=CRONJOB,
        namespace=NAMESPACE,
        **overrides,
    )
    return build_service(settings, api=api_client, clock=clock or Clock())


def handle(service: RetrainService, *alerts: dict[str, Any]) -> list[Decision]:
    return service.handle(Webhook.model_validate(webhook(*alerts)))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------ tests
def test_an_alert_creates_a_job_from_the_cronjob_template_and_learns_its_failure(
    api: tuple[FakeApi, k8s.ApiClient],
) -> None:
    fake, api_client = api
    failed_before = sample("trainer_controller_retrain_runs_total", outcome="failed")
    service = kube_service(api_client)
    [decision] = handle(service, alert(fingerprint="k1"))
    assert (decision.decision, decision.reason) == ("started", "quality_degraded")
    name = "mlops-trainer-retrain-20260701120000"
    assert decision.run == name and list(fake.jobs) == [name]

    job = fake.jobs[name]
    assert job["spec"] == TEMPLATE_SPEC  # same image, env, service account, security context
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/created-by": "retrain-controller",
    }
    assert job["metadata"]["annotations"] == {"mlops.example/trigger": "ModelQualityDegraded/k1"}
    # Owned by the CronJob, as `kubectl create job --from=cronjob/…` makes it: uninstalling takes it along.
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": CRONJOB,
            "uid": "cronjob-uid",
            "controller": True,
        }
    ]
    assert fake.state()["running"] == {
        "name": name,
        "started_at": "2026-07-01T12:00:00Z",
        "trigger": "quality_degraded",
        "alertname": "ModelQualityDegraded",
        "fingerprint": "k1",
        "launched": True,
    }

    assert service.check_running().running is not None  # no condition yet: still running
    fake.finish_job(name, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    state = service.check_running()
    assert state.running is None and state.last_outcome == "failed"
    assert state.last_outcome_detail == (
        f"Job {name}: BackoffLimitExceeded: Job has reached the specified backoff limit"
    )
    assert fake.state()["last_outcome"] == "failed"
    assert sample("trainer_controller_retrain_runs_total", outcome="failed") == failed_before + 1

    events = [(e["reason"], e["type"]) for e in fake.events]
    assert events == [("RetrainStarted", "Normal"), ("RetrainRunFailed", "Warning")]
    involved = fake.events[0]["involvedObject"]
    assert (involved["kind"], involved["name"], involved["uid"]) == ("ConfigMap", CONFIGMAP, "cm-uid")
    assert fake.events[0]["message"] == (
        f"started/quality_degraded: alert ModelQualityDegraded hotel-adr v1 (fingerprint k1), run {name}"
    )


def test_a_succeeded_job_and_the_guard_rails_in_the_configmap(api: tuple[FakeApi, k8s.ApiClient]) -> None:
    fake, api_client = api
    clock = Clock()
    service = kube_service(api_client, clock)
    [started] = handle(service, alert(fingerprint="k2"))
    assert started.run is not None
    fake.finish_job(started.run, "Complete", "CompletionsReached", "")
    assert service.check_running().last_outcome == "succeeded"

    # A new controller (another pod, after a restart) reads the same ConfigMap.
    restarted = kube_service(api_client, clock)
    reasons = [(d.decision, d.reason) for d in handle(restarted, alert(fingerprint="k2"), alert())]
    assert reasons == [("skipped", "duplicate"), ("skipped", "cooldown")]
    assert [e["reason"] for e in fake.events][-2:] == ["RetrainSkipped", "RetrainSkipped"]
    assert len(fake.jobs) == 1


def test_a_job_that_cannot_be_created_is_launch_failed_and_gives_its_slot_back(
    api: tuple[FakeApi, k8s.ApiClient],
) -> None:
    fake, api_client = api
    del fake.cronjobs[CRONJOB]  # e.g. rendered under another name
    service = kube_service(api_client)
    [decision] = handle(service, alert(fingerprint="k3"))
    assert (decision.decision, decision.reason) == ("skipped", "launch_failed")
    assert decision.detail == (
        f'cannot create Job {NAMESPACE}/mlops-trainer-retrain-20260701120000: 404 Not Found: cronjobs.batch "{CRONJOB}" not found'
    )
    state = fake.state()
    assert state["running"] is None and state["runs"] == [] and state["fingerprints"] == {}
    assert [(d["decision"], d["reason"]) for d in state["decisions"]] == [("skipped", "launch_failed")]
    assert [(e["reason"], e["type"]) for e in fake.events] == [("RetrainSkipped", "Warning")]


def test_a_job_deleted_before_its_outcome_was_seen_counts_as_failed(
    api: tuple[FakeApi, k8s.ApiClient],
) -> None:
    fake, api_client = api
    service = kube_service(api_client)
    [decision] = handle(service, alert())
    assert decision.run is not None
    del fake.jobs[decision.run]  # its TTL ran out while the controller was down
    state = service.check_running()
    assert state.last_outcome == "failed"
    assert state.last_outcome_detail == f"the run vanished: Job {NAMESPACE}/{decision.run} no longer exists"


def test_the_configmap_store_decides_again_after_a_conflict(api: tuple[FakeApi, k8s.ApiClient]) -> None:
    """Two writers at once: the second replace carries a stale resourceVersion, gets 409, reads again and
    applies its change to the new state; neither write is lost."""
    fake, api_client = api
    mine, theirs = (ConfigMapStateStore(api_client, NAMESPACE, CONFIGMAP) for _ in range(2))
    calls = []

    def change(state: GuardState) -> tuple[GuardState, int]:
        calls.append(len(state.fingerprints))
        if len(calls) == 1:  # the other writer slips in between our read and our write
            theirs.update(lambda s: (s.model_copy(update={"fingerprints": {"theirs": START}}), None))
        return state.model_copy(update={"fingerprints": {**state.fingerprints, "mine": START}}), len(calls)

    assert mine.update(change) == 2
    assert calls == [0, 1] and fake.conflicts == 1
    assert set(mine.read().fingerprints) == {"theirs", "mine"}


def test_a_missing_configmap_is_a_clear_store_error(api: tuple[FakeApi, k8s.ApiClient]) -> None:
    fake, api_client = api
    del fake.configmaps[CONFIGMAP]
    with pytest.raises(StateStoreError) as error:
        kube_service(api_client).state()
    assert str(error.value) == (
        f'cannot read ConfigMap {NAMESPACE}/{CONFIGMAP}: 404 Not Found: configmaps "{CONFIGMAP}" not found'
    )


def test_job_names_fit_a_label_value() -> None:
    launcher = KubernetesLauncher(
        k8s.ApiClient(), NAMESPACE, "a-very-long-release-name-that-goes-on-mlops-trainer"
    )
    name = launcher.run_name(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert len(name) <= 63 and name.endswith("-retrain-20260701120000") and name[0].isalnum()
