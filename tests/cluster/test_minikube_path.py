"""The Minikube walkthrough (k8s/README.md) on a real cluster, as a user runs it, then the day-2
operations (docs/operations.md).

One release, one namespace that enforces the `restricted` PodSecurity profile, NetworkPolicies on
(the chart's default). The tests run in file order and build on each other: install, predict,
load, drift and its alert, dashboard, network policies, HPA, upgrade under load, a new champion,
rollback, uninstall.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from mlflow import MlflowClient

from scripts import labels as label_feed
from scripts import local_stack as stack
from tests.cluster import kube, scenario
from tests.cluster.conftest import REPORT

NAMESPACE = os.environ.get("CLUSTER_NAMESPACE", "mlops")
RELEASE = "mlops"
MODEL = "hotel-adr"
# The Minikube walkthrough's home; the README repeats its install line (tests/test_workflows.py).
WALKTHROUGH = kube.REPO / "k8s" / "README.md"
DASHBOARD = kube.REPO / "charts" / "mlops" / "dashboards" / "mlops.json"
# Install and the scenario take 15-25 minutes on 2 cores; each step has its own, tighter timeout.
pytestmark = pytest.mark.timeout(3600)
INSTALL = ["helm", "install", RELEASE, "charts/mlops", "-n", NAMESPACE, "--create-namespace",
           "-f", "k8s/values-laptop.yaml", "--timeout", "15m"]  # fmt: skip


@dataclass
class Release:
    ns: kube.Namespace
    predictor_image: str = ""
    forwards: dict[str, kube.PortForward] = field(default_factory=dict)
    labelled: label_feed.LabelledTraffic | None = None
    """The summer bookings whose labels the feedback test posted."""
    controller_state: dict | None = None
    """The retrain controller's state after its run, to compare after a restart and an upgrade."""

    def forward(self, service: str, port: int) -> str:
        """A port-forward to the Service, reopened when the pod behind it went away."""
        forward = self.forwards.get(service)
        if forward is None or forward._proc.poll() is not None:
            forward = kube.PortForward(self.ns.name, f"service/{RELEASE}-{service}", port)
            self.forwards[service] = forward
        return forward.url

    def predictor_pods(self) -> list[dict]:
        return [p for p in self.ns.pods("predictor", RELEASE) if not p["metadata"].get("deletionTimestamp")]

    def served_versions(self) -> dict[str, str | None]:
        """pod name -> the model version it serves, asked through a port-forward to each pod."""
        versions = {}
        for pod in self.predictor_pods():
            name = pod["metadata"]["name"]
            with kube.port_forward(self.ns.name, f"pod/{name}", 8080) as forward:
                body = httpx.get(f"{forward.url}/v1/models/{MODEL}", timeout=10).json()
            versions[name] = body.get("version") if body.get("ready") else None
        return versions


@pytest.fixture(scope="module")
def release(cluster: str, images: tuple[str, ...], stage) -> Iterator[Release]:
    ns = kube.Namespace(NAMESPACE)
    kube.run(["kubectl", "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", "--timeout=5m"])
    # The API server itself checks every pod of the release against the restricted profile.
    ns_manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
            },
        },
    }
    kube.run(["kubectl", "apply", "-f", "-"], input=json.dumps(ns_manifest))
    r = Release(ns)
    peaks = kube.ResourcePeaks(NAMESPACE)
    try:
        yield r
    finally:
        for forward in r.forwards.values():
            forward.close()
        (kube.LOG_DIR / "diagnostics.txt").write_text(ns.diagnostics())
        (kube.LOG_DIR / "resource-peaks.txt").write_text(usage := peaks.stop())
        REPORT.append("kubectl top, peak per component over the scenario:\n" + usage)


def test_helm_install_registers_the_champion(release: Release, stage) -> None:
    """`helm install` as the README and k8s/README.md type it; the trainer hook has registered a champion when it returns.

    While the hook trains, no predictor is Ready: a drift check started then must end cleanly."""
    ns = release.ns
    with stage("helm install (trainer hook included)"):
        install = subprocess.Popen([kube.binary("helm"), *INSTALL[1:]], cwd=kube.REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        try:

            def cronjob_created() -> bool:
                if install.poll() is not None and install.returncode != 0:
                    raise kube.CommandFailed(f"helm install failed:\n{install.stdout.read()}")  # type: ignore[union-attr]
                return bool(ns.kubectl("get", "cronjob", f"{RELEASE}-drift-monitor", "--ignore-not-found"))

            kube.wait_for(cronjob_created, 300, what="the drift-monitor CronJob")
            early = "drift-before-ready"
            ns.kubectl("create", "job", f"--from=cronjob/{RELEASE}-drift-monitor", early)
            output, _ = install.communicate(timeout=1200)
        finally:
            install.kill()
        assert install.returncode == 0, output + ns.diagnostics()
    trainer_log = ns.kubectl("logs", f"job/{RELEASE}-trainer", "-c", "trainer", "--tail=-1")
    outcome = trainer_outcome(trainer_log)
    assert outcome["promoted"] is True and outcome["version"] == "1", trainer_log[-2000:]

    early_log = ns.wait_job(early, 600)
    assert "nothing to check" in early_log, early_log
    failed = [
        j["metadata"]["name"]
        for j in ns.items("jobs")
        if any(
            c["type"] == "Failed" and c["status"] == "True" for c in j.get("status", {}).get("conditions", [])
        )
    ]
    assert not failed, f"failed Jobs after a fresh install: {failed}"
    # The image as the chart rendered it (its tag defaults to the chart's appVersion).
    deployment = release.ns.get("deployment", f"{RELEASE}-predictor")
    release.predictor_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_predictor_rollout_and_helm_test(release: Release, stage) -> None:
    with stage("rollout status + helm test"):
        release.ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330
        )
        out = kube.run(
            ["helm", "test", RELEASE, "-n", NAMESPACE, "--logs", "--timeout", "5m"], timeout=330
        ).stdout
    assert "Succeeded" in out, out
    assert "POST" in out and " 200 " in out, f"helm test --logs shows no prediction:\n{out}"


def test_readme_curl_examples_through_port_forward(release: Release) -> None:
    """The walkthrough's own curl commands, copied from k8s/README.md, through `kubectl port-forward`."""
    url = release.forward("predictor", 8080)
    commands = scenario.readme_curl_examples(WALKTHROUGH, "Minikube")
    assert len(commands) >= 3, commands
    answers = [scenario.run_curl(c, url) for c in commands]
    metadata, single, split = answers[:3]
    assert metadata["name"] == MODEL and metadata["ready"] is True and metadata["version"] == "1"
    # The champion (hist_gradient_boosting) is served by the compiled path in the pod: treelite loads
    # from the image, and its load-time proof holds there too.
    assert "lookup-encoder" in (metadata["compiled"] or ""), metadata
    assert len(single["predictions"]) == 1 and single["model_version"] == "1"
    assert len(split["predictions"]) == 2
    batch = json.loads(scenario.REQUEST_BODY.read_text())
    batch["instances"] = batch["instances"] * 5
    r = httpx.post(f"{url}/v1/models/{MODEL}:predict", json=batch, timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 5
    for field_name, broken in (("lead_time", "soon"), ("adults", None)):
        bad = json.loads(scenario.REQUEST_BODY.read_text())
        bad["instances"][0][field_name] = broken
        if broken is None:
            del bad["instances"][0][field_name]
        r = httpx.post(f"{url}/v1/models/{MODEL}:predict", json=bad, timeout=30)
        assert r.status_code == 422 and field_name in r.json()["error"], r.text


def make_load(url: str, mode: str, duration: str, users: int = 10) -> str:
    """`make load` as k8s/README.md runs it; exit 0 means no failed request."""
    out = kube.run(["make", "--no-print-directory", "load", f"HOST={url}", f"USERS={users}", "SPAWN_RATE=10",
                    f"DURATION={duration}", f"MODE={mode}"], timeout=600)  # fmt: skip
    return out.stdout


def drift_check(release: Release) -> dict:
    return drift_check_in(release.ns, RELEASE)


def drift_check_in(ns: kube.Namespace, release_name: str) -> dict:
    """`kubectl create job --from=cronjob/...`, as k8s/README.md's drift-now; the JSON report it prints."""
    name = scenario.unique("drift-now")
    ns.kubectl("create", "job", f"--from=cronjob/{release_name}-drift-monitor", name)
    logs = ns.wait_job(name, 600)
    report_line = next(line for line in logs.splitlines() if line.startswith("{") and '"versions"' in line)
    return json.loads(report_line)


def test_locust_normal_traffic_and_no_drift(release: Release, stage) -> None:
    url = release.forward("predictor", 8080)
    with stage("locust, normal traffic, 30 s (make load)"):
        out = make_load(url, "normal", "30s")
    assert "predictor" in out, out  # `make load` exits non-zero on any failed request
    with stage("drift check on normal traffic"):
        report = drift_check(release)
    (version,) = report["versions"]
    assert version["enough_data"] and version["drift_detected"] is False, json.dumps(report)[:3000]


def test_summer_traffic_fires_data_drift_alert(release: Release, stage) -> None:
    url = release.forward("predictor", 8080)
    with stage("locust, summer traffic, 45 s"):
        make_load(url, "drift", "45s")
    with stage("drift check on summer traffic"):
        report = drift_check(release)
    assert any(v["drift_detected"] for v in report["versions"]), json.dumps(report)[:3000]
    prometheus = release.forward("prometheus", 9090)
    alertmanager = release.forward("alertmanager", 9093)
    with stage("DataDriftDetected firing in Prometheus, then in Alertmanager"):
        firing = kube.wait_for(
            lambda: [a for a in stack.prometheus_alerts(prometheus, "DataDriftDetected") if a["state"] == "firing"],
            300, interval=5, what="DataDriftDetected firing",
        )  # fmt: skip
        routed = kube.wait_for(lambda: stack.alertmanager_alerts(alertmanager, "DataDriftDetected"), 120,
                               interval=5, what="DataDriftDetected in Alertmanager")  # fmt: skip
    assert firing[0]["labels"]["model_name"] == MODEL
    receivers = {r["name"] for r in routed[0]["receivers"]}
    assert receivers == {"default", "retraining-webhook"}, receivers


LABELLED_ROWS = 400


def test_feedback_path_on_the_in_cluster_database(release: Release, stage) -> None:
    """Summer bookings with ids, their true prices posted through the port-forward, the CronJob's quality
    check, ModelQualityDegraded firing in the in-cluster Prometheus; then the database pod deleted and
    the ledger intact once it is back (its data lives on the PVC)."""
    url = release.forward("predictor", 8080)
    with stage(f"{LABELLED_ROWS} summer bookings with ids, their labels posted to :feedback"):
        sent = label_feed.send([url], "drift", rows=LABELLED_ROWS, prefix=scenario.unique("summer"))
        assert not sent.failures and len(sent.ids) == LABELLED_ROWS, sent.failures[:3]
        # The predictor writes the ledger off the request path: re-send (idempotent) until all match.
        totals = kube.wait_for(
            lambda: (t := label_feed.post_labels(url, sent.labels()))["matched"] == LABELLED_ROWS and t,
            60, interval=2, what="every label matched to its prediction in the ledger",
        )  # fmt: skip
    assert totals["stored"] == LABELLED_ROWS and totals["unmatched"] == 0, totals
    with stage("quality check (Job from the drift-monitor CronJob)"):
        report = drift_check(release)
    quality = report["quality"]
    [version] = [v for v in quality["versions"] if v["labelled_rows"]]
    assert version["labelled_rows"] == LABELLED_ROWS and version["degraded"] is True, json.dumps(quality)
    assert version["bias"] < -10  # the 2017 summer price level is in no feature: the model predicts too low
    prometheus = release.forward("prometheus", 9090)
    with stage("ModelQualityDegraded firing in Prometheus"):
        firing = kube.wait_for(
            lambda: [a for a in stack.prometheus_alerts(prometheus, "ModelQualityDegraded") if a["state"] == "firing"],
            300, interval=5, what="ModelQualityDegraded firing",
        )  # fmt: skip
    assert firing[0]["labels"]["model_version"] == version["model_version"]
    release.labelled = sent


def test_quality_alert_retrains_in_the_cluster(release: Release, stage) -> None:
    """The closed loop in the cluster: Alertmanager's webhook reaches the retrain controller, which creates
    one training Job from the trainer CronJob's template; the run trains on the data plus the labelled
    ledger rows, the paired gate promotes, every predictor pod follows. The controller's state survives
    a restart of its pod; its ServiceAccount can do what it needs and nothing else."""
    ns = release.ns
    created_by = "app.kubernetes.io/created-by=retrain-controller"
    with stage("ModelQualityDegraded → Alertmanager → retrain controller → training Job"):
        [job] = kube.wait_for(lambda: ns.items("jobs", "-l", created_by), 300, interval=5,
                              what="a Job created by the retrain controller")  # fmt: skip
    name = job["metadata"]["name"]
    assert job["metadata"]["ownerReferences"][0]["name"] == f"{RELEASE}-trainer"  # removed with the release
    cronjob = ns.get("cronjob", f"{RELEASE}-trainer")
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == template["containers"][0]["image"]
    assert job["spec"]["template"]["spec"]["securityContext"] == template["securityContext"]
    with stage("training Job: the data plus the labelled ledger rows, paired gate"):
        logs = ns.wait_job(name, 900)
    outcome = trainer_outcome(ns.kubectl("logs", f"job/{name}", "-c", "trainer", "--tail=-1"))
    assert outcome["ledger"]["used"] is True and outcome["ledger"]["rows"] >= LABELLED_ROWS, outcome
    assert outcome["gate"]["kind"] == "paired-recent-labels" and outcome["gate"]["high"] < 0, outcome
    assert outcome["promoted"] is True and outcome["version"] == "2", logs[-3000:]
    with stage("every predictor pod follows @champion to v2"):
        kube.wait_for(lambda: set(release.served_versions().values()) == {"2"}, 180, interval=5,
                      what="every predictor pod serving version 2")  # fmt: skip

    # The controller learns the Job's outcome on its next status check.
    state = kube.wait_for(lambda: (st := controller_state(release))["running"] is None and st, 120,
                          interval=5, what="the controller seeing its run finished")  # fmt: skip
    assert state["last_outcome"] == "succeeded", state
    assert len(state["runs"]) == 1 and state["fingerprints"], state
    reasons = ns.kubectl("get", "events", "--field-selector", "reason=RetrainStarted", "-o", "name")
    assert reasons.strip(), "no RetrainStarted Event"
    with stage("retrain controller pod deleted; its state intact after the restart"):
        [pod] = ns.pods("retrain-controller", RELEASE)
        ns.kubectl("delete", "pod", pod["metadata"]["name"], "--wait", timeout=120)
        ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-retrain-controller", "--timeout=5m", timeout=330
        )
        assert_state_kept(state, controller_state(release))
    release.controller_state = state

    account = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-retrain-controller"
    allowed = {("create", "jobs.batch"): "yes", ("list", "jobs.batch"): "yes", ("delete", "jobs.batch"): "no",
               ("create", "pods"): "no", ("get", "secrets"): "no", ("list", "configmaps"): "no",
               ("update", f"configmaps/{RELEASE}-mlflow"): "no", ("create", "cronjobs.batch"): "no"}  # fmt: skip
    answers = {
        (verb, what): ns.kubectl("auth", "can-i", verb, what, "--as", account, check=False).strip()
        for verb, what in allowed
    }
    assert answers == allowed


def assert_state_kept(before: dict, after: dict) -> None:
    """The guard rails the controller keeps in its ConfigMap are what they were. Not the whole answer of
    /v1/state: `guard_rails` is computed at each call (`now`) and `rollback_check` is the last check of
    this process; later decisions (Alertmanager's repeats, the resolved notification) may be added."""
    kept = (
        "running",
        "last_run",
        "last_finished_at",
        "last_outcome",
        "last_outcome_detail",
        "runs",
        "fingerprints",
    )
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    lost = [d for d in before["decisions"] if d not in after["decisions"]]
    assert not lost, lost


def controller_state(release: Release) -> dict:
    """GET /v1/state through a port-forward, with the webhook token from the release's Secret."""
    deployment = release.ns.get("deployment", f"{RELEASE}-retrain-controller")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == "RETRAINING_WEBHOOK_TOKEN")
    secret = release.ns.get("secret", ref["name"])
    token = base64.b64decode(secret["data"][ref["key"]]).decode()

    def attempt() -> dict | None:
        # A port-forward of its own each time: one opened before the pod was replaced keeps accepting
        # locally but cannot reach the new pod.
        try:
            with kube.port_forward(NAMESPACE, f"service/{RELEASE}-retrain-controller", 8080) as forward:
                return _get_or_none(f"{forward.url}/v1/state", token)
        except (kube.CommandFailed, TimeoutError):
            return None  # no ready pod behind the Service yet

    return kube.wait_for(attempt, 180, interval=2, what="the controller's /v1/state")


def _get_or_none(url: str, token: str) -> dict | None:
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_ledger_survives_a_database_pod_restart(release: Release, stage) -> None:
    """The database pod deleted; once it is back the ledger still holds every prediction and label."""
    url = release.forward("predictor", 8080)
    assert release.labelled is not None, "the feedback test did not run"
    sent = release.labelled
    with stage("ledger database pod deleted; the ledger intact after it restarts"):
        [database] = release.ns.pods("ledger-database", RELEASE)
        release.ns.kubectl("delete", "pod", database["metadata"]["name"], "--wait", timeout=120)
        release.ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-ledger-database", "--timeout=5m", timeout=330
        )
        # Re-posting the same labels: every one replaces a stored label and matches a stored prediction.
        # 503 while the predictor's connections reconnect; the client retries, as the route says.
        again = kube.wait_for(
            lambda: post_labels_or_none(url, sent.labels()), 120, interval=2, what="feedback accepted again"
        )
    assert again["replaced"] == LABELLED_ROWS and again["matched"] == LABELLED_ROWS, again


def post_labels_or_none(url: str, labels: list[dict]) -> dict | None:
    try:
        return label_feed.post_labels(url, labels)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 503:
            return None
        raise


def test_dashboard_panels_have_data(release: Release) -> None:
    """Every panel of the shipped Grafana dashboard returns data from the in-cluster Prometheus."""
    prometheus = release.forward("prometheus", 9090)
    kube.wait_for(lambda: scenario.promql(prometheus, "predictor_model_info"), 60, what="predictor scraped")
    empty = [
        (title, expr)
        for title, expr in scenario.dashboard_queries(DASHBOARD, {"model": MODEL})
        if not scenario.promql(prometheus, expr)
    ]
    assert not empty, "panels without data:\n" + "\n".join(f"{t}: {e}" for t, e in empty)


def test_network_policies_are_enforced(release: Release) -> None:
    """A pod outside the release reaches the predictor only; the predictor reaches MLflow and its ledger only."""
    svc = {
        name: f"{RELEASE}-{name}"
        for name in ("predictor", "mlflow", "pushgateway", "alertmanager", "prometheus", "ledger-database")
    }
    outside = scenario.reachable_from_outside(
        release.ns, release.predictor_image,
        [f"{svc['predictor']}:8080", f"{svc['mlflow']}:5000", f"{svc['pushgateway']}:9091",
         f"{svc['alertmanager']}:9093", f"{svc['prometheus']}:9090", f"{svc['ledger-database']}:5432"],
    )  # fmt: skip
    assert outside.pop(f"{svc['predictor']}:8080") == "open", outside
    assert all(v in BLOCKED for v in outside.values()), outside
    pod = release.predictor_pods()[0]["metadata"]["name"]
    inside = scenario.reachable_from_pod(
        release.ns,
        pod,
        [f"{svc['mlflow']}:5000", f"{svc['ledger-database']}:5432", f"{svc['pushgateway']}:9091",
         f"{svc['alertmanager']}:9093"],
    )  # fmt: skip
    assert inside.pop(f"{svc['mlflow']}:5000") == "open", inside
    assert inside.pop(f"{svc['ledger-database']}:5432") == "open", inside
    assert all(v in BLOCKED for v in inside.values()), inside


# What a dropped (timeout) or rejected (refused) connection looks like; a name that does not resolve
# (gaierror) would be a broken test, not a working policy.
BLOCKED = {"TimeoutError", "ConnectionRefusedError"}


def hpa_replicas(release: Release) -> int:
    return release.ns.get("hpa", f"{RELEASE}-predictor").get("status", {}).get("currentReplicas", 0)


def test_hpa_scales_up_under_load_and_back_down(release: Release, stage) -> None:
    service = f"http://{RELEASE}-predictor:8080"
    # The locust runs above may have scaled it already (one pod behind the port-forward is busy).
    kube.wait_for(
        lambda: hpa_replicas(release) == 1, 420, interval=5, what="HPA at 1 replica before the load"
    )
    with stage("HPA: 1 -> 2+ replicas under in-cluster load"):
        load = scenario.InClusterLoad.start(release.ns, release.predictor_image, service, MODEL, 120, 6)
        kube.wait_for(lambda: hpa_replicas(release) >= 2, 240, interval=5, what="HPA scale-up")
        release.ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330
        )
    result = load.result()
    assert result["ok"] > 0 and not result["failed"], result
    with stage("HPA: back to 1 replica after the load"):
        kube.wait_for(lambda: hpa_replicas(release) == 1, 420, interval=5, what="HPA scale-down")


def test_helm_upgrade_rolls_pods_with_zero_failed_requests(release: Release, stage) -> None:
    service = f"http://{RELEASE}-predictor:8080"
    before = {p["metadata"]["name"] for p in release.predictor_pods()}
    load = scenario.InClusterLoad.start(release.ns, release.predictor_image, service, MODEL, 150, 4)
    with stage("helm upgrade (predictor setting + trainer CronJob) under load"):
        kube.run(["helm", "upgrade", RELEASE, "charts/mlops", "-n", NAMESPACE, "--reuse-values",
                  "--set", "predictor.env.PREDICTOR_SAMPLE_BUFFER_SIZE=5000",
                  "--set", "trainer.cronJob.enabled=true", "--timeout", "10m"], timeout=660)  # fmt: skip
        release.ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330
        )
    assert release.ns.job_outcome(load.name) is None, "the load ended before the rollout did"
    result = load.result()
    after = release.predictor_pods()
    assert before.isdisjoint(p["metadata"]["name"] for p in after), "the upgrade did not replace the pods"
    env = {e["name"]: e.get("value") for e in after[0]["spec"]["containers"][0]["env"]}
    assert env["PREDICTOR_SAMPLE_BUFFER_SIZE"] == "5000"
    assert result["ok"] > 100 and not result["failed"], result
    # The upgrade re-applied the state ConfigMap's manifest: what the controller wrote into it is kept.
    assert release.controller_state is not None, "the closed-loop test did not run"
    assert_state_kept(release.controller_state, controller_state(release))


def test_new_champion_is_followed_without_restart(release: Release, stage) -> None:
    """A training Job from the CronJob registers version 3 (v2 came from the retrain controller's run);
    `trainer promote` makes it champion."""
    # The upgrade's load scaled the HPA up: let it settle, so no pod goes away during the check.
    kube.wait_for(lambda: hpa_replicas(release) == 1, 420, interval=5, what="HPA at 1 replica")
    release.ns.kubectl("rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330)
    pods_before = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
                   for p in release.predictor_pods()}  # fmt: skip
    job = scenario.unique("retrain")
    with stage("second training run (Job from the trainer CronJob)"):
        release.ns.kubectl("create", "job", f"--from=cronjob/{RELEASE}-trainer", job)
        release.ns.wait_job(job, 900)
    # The trainer container only: the wait-for-mlflow init container prints its own JSON outcome.
    outcome = trainer_outcome(release.ns.kubectl("logs", f"job/{job}", "-c", "trainer", "--tail=-1"))
    assert outcome["version"] == "3", outcome
    mlflow = release.forward("mlflow", 5000)
    with stage("trainer promote --version 3, followed by every pod"):
        promote(mlflow, "3")
        kube.wait_for(lambda: set(release.served_versions().values()) == {"3"}, 120, interval=5,
                      what="every predictor pod serving version 3")  # fmt: skip
    pods_after = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
                  for p in release.predictor_pods()}  # fmt: skip
    assert pods_after == pods_before, "a pod was replaced or restarted to follow the alias"


def test_challenger_in_shadow_and_canary_then_promoted_and_rolled_back(release: Release, stage) -> None:
    """docs/operations.md "Champion and challenger": version 1 (the install's model, trained without the
    ledger; v2 and v3 learned the same ledger rows and predict alike) as `challenger`, in shadow and as a 50% canary
    in one `helm upgrade`; labelled traffic; `trainer compare` and `trainer promote --alias challenger`, then
    `trainer rollback`, run with `kubectl exec` in the retrain controller's pod as the docs say."""
    mlflow = release.forward("mlflow", 5000)
    MlflowClient(mlflow).set_registered_model_alias(MODEL, "challenger", "1")
    with stage("helm upgrade: challenger v1 in shadow and as a 50% canary"):
        kube.run(["helm", "upgrade", RELEASE, "charts/mlops", "-n", NAMESPACE, "--reuse-values",
                  "--set", "predictor.shadow.alias=challenger", "--set", "predictor.canary.alias=challenger",
                  "--set", "predictor.canary.percent=50", "--timeout", "10m"], timeout=660)  # fmt: skip
        release.ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330
        )
        kube.wait_for(lambda: all(c == {"shadow": "1", "canary": "1"} for c in challengers(release).values()),
                      120, interval=5, what="every predictor pod with challenger v1 loaded")  # fmt: skip
    # The upgrade replaced the predictor pods: a port-forward opened before it is bound to a pod gone.
    if (stale := release.forwards.pop("predictor", None)) is not None:
        stale.close()
    url = release.forward("predictor", 8080)
    with stage("labelled traffic over both arms, labels posted"):
        sent = label_feed.send([url], "drift", rows=CHALLENGER_ROWS, prefix=scenario.unique("ab"), batch=4)
        assert not sent.failures and len(sent.ids) == CHALLENGER_ROWS, sent.failures[:3]
        kube.wait_for(
            lambda: label_feed.post_labels(url, sent.labels())["matched"] == CHALLENGER_ROWS,
            60, interval=2, what="every label matched to its prediction in the ledger",
        )  # fmt: skip
    arms = {}
    for key in (f"user-{i}" for i in range(40)):  # the same user twice: the same version both times
        answers = {predict_as(url, key)["model_version"] for _ in range(2)}
        assert len(answers) == 1, (key, answers)
        arms[key] = answers.pop()
    assert set(arms.values()) == {"1", "3"}, arms
    samples = httpx.get(f"{url}/v1/samples", timeout=10).json()["samples"]
    shadowed = [s.get("shadow_version") for s in samples if s["model_version"] == "3"]
    assert shadowed.count("1") >= 0.9 * len(shadowed) > 0, shadowed  # a full shadow queue may skip a batch
    with stage("trainer compare in the retrain controller's pod"):
        report = controller_trainer(release, "compare", "--challenger-alias", "challenger",
                                    env={"TRAINER_COMPARE_MIN_ROWS": "30"})  # fmt: skip
    REPORT.append("trainer compare (cluster): " + json.dumps(report))
    assert report["mode"] == "shadow" and report["challenger"]["version"] == "1", report
    assert report["champion"]["version"] == "3" and report["verdict"] != "insufficient_data", report
    assert report["difference"]["mae"] != 0, report  # two different models, judged on the same rows
    with stage("trainer promote --alias challenger, followed by every pod"):
        controller_trainer(release, "promote", "--alias", "challenger")
        kube.wait_for(lambda: set(release.served_versions().values()) == {"1"}, 120, interval=5,
                      what="every predictor pod serving version 1")  # fmt: skip
    with stage("trainer rollback: back to version 3"):
        controller_trainer(release, "rollback", "--reason", "cluster test: blue-green back")
        kube.wait_for(lambda: set(release.served_versions().values()) == {"3"}, 120, interval=5,
                      what="every predictor pod serving version 3 again")  # fmt: skip


CHALLENGER_ROWS = 240


def challengers(release: Release) -> dict[str, dict[str, str | None]]:
    """pod name -> {role: version loaded}, asked of each pod."""
    loaded = {}
    for pod in release.predictor_pods():
        name = pod["metadata"]["name"]
        with kube.port_forward(release.ns.name, f"pod/{name}", 8080) as forward:
            body = httpx.get(f"{forward.url}/v1/models/{MODEL}", timeout=10).json()
        loaded[name] = {c["role"]: c["version"] for c in body.get("challengers", [])}
    return loaded


def predict_as(url: str, routing_key: str) -> dict:
    record = label_feed.labelled_records("drift", 1, 0)[0][0]
    response = httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": [record]},
                          headers={"X-Routing-Key": routing_key}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def controller_trainer(release: Release, *args: str, env: dict[str, str] | None = None) -> dict:
    """`kubectl exec` a trainer command in the retrain controller's pod (it has MLflow and the ledger)."""
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    out = release.ns.kubectl("exec", f"deployment/{RELEASE}-retrain-controller", "--", *prefix, "trainer", *args,
                             timeout=180)  # fmt: skip
    outcome, _end = json.JSONDecoder().raw_decode(out[out.index("{") :])
    return outcome


def trainer_outcome(logs: str) -> dict:
    """The JSON outcome `trainer train` prints on stdout (indented, one key per line). `kubectl logs` merges
    stderr in line by line, so a log line written meanwhile can sit between its lines: those are skipped."""
    body = []
    for line in logs[logs.index("{\n") :].splitlines():
        if line in ("{", "}") or line.startswith(" "):
            body.append(line)
            if line == "}":
                break
    return json.loads("\n".join(body))


def promote(mlflow_url: str, version: str) -> dict:
    """`trainer promote` from the user's machine, through the MLflow port-forward (docs/operations.md)."""
    out = kube.run([str(stack.VENV_BIN / "trainer"), "promote", "--version", version],
                   env={"MLFLOW_TRACKING_URI": mlflow_url, "TRAINER_MODEL_NAME": MODEL}, timeout=120)  # fmt: skip
    return json.loads(out.stdout)


def test_helm_rollback_and_model_rollback(release: Release, stage) -> None:
    with stage("helm rollback to the install revision"):
        kube.run(["helm", "rollback", RELEASE, "1", "-n", NAMESPACE, "--timeout", "10m"], timeout=660)
        release.ns.kubectl(
            "rollout", "status", f"deployment/{RELEASE}-predictor", "--timeout=5m", timeout=330
        )
    pods = release.predictor_pods()
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["PREDICTOR_SAMPLE_BUFFER_SIZE"] == "10000"
    # Revision 1 has no schedule: the CronJob is there only as the retrain controller's Job template.
    assert release.ns.get("cronjob", f"{RELEASE}-trainer")["spec"]["suspend"] is True
    with stage("model rollback: trainer promote --version 1"):
        promote(release.forward("mlflow", 5000), "1")
        kube.wait_for(lambda: set(release.served_versions().values()) == {"1"}, 120, interval=5,
                      what="every predictor pod serving version 1 again")  # fmt: skip
    kube.run(["helm", "test", RELEASE, "-n", NAMESPACE, "--timeout", "5m"], timeout=330)


# What `helm uninstall` leaves behind, as k8s/README.md ("Minikube") and docs/operations.md say: the MLflow
# and ledger database PVCs, the database's password Secret and the retrain controller's state ConfigMap
# (helm.sh/resource-policy: keep; the webhook token Secret is not kept), the last trainer hook Job with
# its pod (deleted by its TTL)
# and the last `helm test` pod (hooks are not part of the release; the next `helm test` replaces it).
KEPT_AFTER_UNINSTALL = {
    f"persistentvolumeclaim/{RELEASE}-mlflow",
    f"persistentvolumeclaim/{RELEASE}-ledger-database",
    f"secret/{RELEASE}-ledger-database",
    f"configmap/{RELEASE}-retrain-controller",
    f"job.batch/{RELEASE}-trainer",
    f"pod/{RELEASE}-trainer-*",
    f"pod/{RELEASE}-test",
}


def test_helm_uninstall_keeps_only_what_the_docs_say(release: Release, stage) -> None:
    for forward in release.forwards.values():
        forward.close()
    release.forwards.clear()
    with stage("helm uninstall"):
        kube.run(["helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m"], timeout=330)
        # Jobs that `kubectl create job --from=cronjob/...` made are owned by the CronJob: the garbage
        # collector removes them (and their pods) shortly after.
        kube.wait_for(
            lambda: leftovers(release) <= KEPT_AFTER_UNINSTALL, 180, what="the release's objects gone"
        )
    assert leftovers(release) == KEPT_AFTER_UNINSTALL
    release.ns.kubectl(
        "delete", "pvc", f"{RELEASE}-mlflow", f"{RELEASE}-ledger-database", "--wait", timeout=120
    )
    release.ns.kubectl("delete", "secret", f"{RELEASE}-ledger-database", timeout=60)
    release.ns.kubectl("delete", "configmap", f"{RELEASE}-retrain-controller", timeout=60)


def leftovers(release: Release) -> set[str]:
    """Objects in the namespace besides its defaults and the tests' own; the trainer's pod as a pattern."""
    out = release.ns.kubectl("get", "all,configmaps,secrets,pvc,networkpolicies,serviceaccounts,roles,rolebindings",
                             "-o", "name")  # fmt: skip
    ignored = {"configmap/kube-root-ca.crt", "serviceaccount/default"} | created_by_tests(release)
    trainer_pod = f"pod/{RELEASE}-trainer-"
    return {f"{trainer_pod}*" if n.startswith(trainer_pod) else n for n in out.split() if n not in ignored}


def created_by_tests(release: Release) -> set[str]:
    """Objects this test created itself (load and probe Jobs, their ConfigMaps and pods)."""
    selector = ",".join(f"{k}={v}" for k, v in scenario.TEST_LABELS.items())
    return set(release.ns.kubectl("get", "jobs,configmaps,pods", "-l", selector, "-o", "name").split())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
