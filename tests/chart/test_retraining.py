"""The retrain controller as the chart renders it: its pod and wiring, exactly the least RBAC, the state
ConfigMap an upgrade cannot touch, the webhook token that Alertmanager and the controller share (kept
across upgrades), the Alertmanager route and URL of the release, the network paths, and the ledger
for training runs. The controller's own settings classes and app are imported, not re-typed."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import (
    ALERTMANAGER_FILE,
    CHART,
    NAMESPACE,
    RELEASE,
    RULES_FILE,
    Rendered,
    Renders,
    containers,
    env_names,
    env_value,
    find_helm,
    helm_template,
    labels,
    run,
)
from tests.fakehttp import serve_json, server_url

CONTROLLER = "retrain-controller"
NAME = f"{RELEASE}-{CONTROLLER}"
TOKEN_SECRET = f"{RELEASE}-retraining-webhook"
TOKEN_PATH = "/etc/alertmanager/secrets/token"
FILE_URL = "http://mlops-retrain-controller:8080/v1/alerts"


def _one(rendered: Rendered, kind: str, component: str) -> dict[str, Any]:
    found = rendered.by_component(kind, component)
    assert len(found) == 1, f"{rendered.name}: {len(found)} {kind} of {component}"
    return found[0]


def _controller(rendered: Rendered) -> dict[str, Any]:
    (container,) = _one(rendered, "Deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom dict for the entries read from elsewhere."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _alertmanager_config(rendered: Rendered, release: str = RELEASE) -> dict[str, Any]:
    fullname = release if "mlops" in release else f"{release}-mlops"
    text = rendered.get("ConfigMap", f"{fullname}-alertmanager")["data"]["alertmanager.yml"]
    return yaml.safe_load(text)


def _hook(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the route, the webhook config) of the `retraining-webhook` receiver."""
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "retraining-webhook"]
    (receiver,) = [r for r in config["receivers"] if r["name"] == "retraining-webhook"]
    (webhook,) = receiver["webhook_configs"]
    return route, webhook


# ------------------------------------------------------------------------------ the pod


def test_controller_is_one_trainer_controller_pod(default: Rendered, values: dict[str, Any]) -> None:
    deployment = _one(default, "Deployment", CONTROLLER)
    assert deployment["metadata"]["name"] == NAME
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    assert pod["automountServiceAccountToken"] is True  # it calls the API, with its own Role
    container = _controller(default)
    trainer = containers(_one(default, "Job", "trainer")["spec"]["template"], init=False)[0]
    # The trainer image's `trainer` entrypoint with the `controller` subcommand: the same image as
    # the runs it starts, so the two never skew.
    assert container["image"] == trainer["image"] and "command" not in container
    assert container["args"] == ["controller"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["securityContext"] == values["containerSecurityContext"]
    assert container["resources"] == values["retraining"]["resources"]
    service = _one(default, "Service", CONTROLLER)
    assert service["metadata"]["name"] == NAME
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_controller_env_is_the_wiring_and_the_values(default: Rendered, values: dict[str, Any]) -> None:
    r = values["retraining"]
    env = _env(_controller(default))
    cronjob = _one(default, "CronJob", "trainer")
    configmap = _one(default, "ConfigMap", CONTROLLER)
    assert env["RETRAINING_LAUNCHER"] == "kubernetes"
    assert env["RETRAINING_STATE_CONFIGMAP"] == configmap["metadata"]["name"] == NAME
    assert env["RETRAINING_TRAINER_CRONJOB"] == cronjob["metadata"]["name"] == f"{RELEASE}-trainer"
    assert env["RETRAINING_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RETRAINING_WEBHOOK_TOKEN"] == {"secretKeyRef": {"name": TOKEN_SECRET, "key": "token"}}
    assert (env["RETRAINING_HOST"], env["RETRAINING_PORT"]) == ("0.0.0.0", "8080")
    assert env["RETRAINING_ENABLED"] == "true" and env["RETRAINING_DRY_RUN"] == "false"
    assert env["RETRAINING_COOLDOWN_SECONDS"] == str(r["cooldownSeconds"])
    assert env["RETRAINING_DAILY_CAP"] == str(r["dailyCap"])
    assert env["RETRAINING_TRIGGER_ALERTS"] == ",".join(r["triggerAlerts"]) == "ModelQualityDegraded"
    assert env["RETRAINING_DRIFT_TRIGGER_ENABLED"] == "false"
    assert env["RETRAINING_DRIFT_ALERTS"] == "DataDriftDetected,PredictionDriftDetected"
    assert env["RETRAINING_DRIFT_MIN_AGE_SECONDS"] == str(r["drift"]["minAgeSeconds"])
    assert env["RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS"] == str(r["rollback"]["checkIntervalSeconds"])
    # The rollback check reads the trainer's own settings, wired as for a training run.
    trainer = _env(containers(cronjob["spec"]["jobTemplate"]["spec"]["template"], init=False)[0])
    for name in (
        "MLFLOW_TRACKING_URI",
        "TRAINER_MODEL_NAME",
        "TRAINER_CHAMPION_ALIAS",
        "TRAINER_LEDGER_DATABASE_URL",
    ):
        assert env[name] == trainer[name], name
    assert env["TRAINER_LEDGER_DATABASE_URL"] == {
        "secretKeyRef": {"name": f"{RELEASE}-ledger-database", "key": "url"}
    }
    assert env["TRAINER_ROLLBACK_MIN_LABELS"] == str(r["rollback"]["minLabels"])
    assert float(env["TRAINER_ROLLBACK_MARGIN"]) == r["rollback"]["margin"]
    assert env["TRAINER_ROLLBACK_WINDOW_SECONDS"] == str(r["rollback"]["windowSeconds"])
    assert env["TRAINER_LABEL_DELAY_SECONDS"] == str(r["rollback"]["labelDelaySeconds"])


def test_controller_settings_read_what_the_values_say(
    default: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered env, read by ControllerSettings and the trainer's Settings, means the values."""
    from tests.chart.test_rendered_settings import _settings_from

    controller, trainer = _settings_from(_controller(default), monkeypatch)
    assert controller.launcher == "kubernetes" and controller.enabled and not controller.dry_run
    assert (controller.cooldown_seconds, controller.daily_cap) == (21600, 3)
    assert controller.trigger_alerts == ["ModelQualityDegraded"]
    assert controller.drift_alerts == ["DataDriftDetected", "PredictionDriftDetected"]
    assert (controller.state_configmap, controller.trainer_cronjob) == (NAME, f"{RELEASE}-trainer")
    assert controller.rollback_check_interval_seconds == 60
    assert trainer.model_name == "hotel-adr" and trainer.ledger_database_url
    assert (trainer.rollback_min_labels, trainer.rollback_margin) == (100, 0.05)
    assert trainer.rollback_window_seconds == 604800


def test_tuned_values_reach_the_controller(renders: Renders) -> None:
    rendered = renders("retraining-tuned")
    env = _env(_controller(rendered))
    assert env["RETRAINING_DRY_RUN"] == "true" and env["RETRAINING_DRIFT_TRIGGER_ENABLED"] == "true"
    assert env["RETRAINING_TRIGGER_ALERTS"] == "ModelQualityDegraded,PredictorHighErrorRate"
    assert env["RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS"] == "0"
    # An existing Secret: the chart makes none and both sides read that one.
    assert env["RETRAINING_WEBHOOK_TOKEN"] == {
        "secretKeyRef": {"name": "alertmanager-webhook", "key": "bearer"}
    }
    assert not rendered.by_component("Secret", CONTROLLER)
    volume = _alertmanager_token_volume(rendered)
    assert volume == {"name": "alertmanager-webhook", "items": [{"key": "bearer", "path": "secrets/token"}]}


def test_kill_switch_keeps_the_controller_answering(renders: Renders) -> None:
    """retraining.enabled=false: the controller still runs and records skipped/disabled decisions;
    the trainer CronJob goes unless a schedule is wanted."""
    rendered = renders("retraining-off")
    assert _env(_controller(rendered))["RETRAINING_ENABLED"] == "false"
    assert not rendered.by_component("CronJob", "trainer")
    assert _hook(_alertmanager_config(rendered))[1]["url"] == FILE_URL


# ------------------------------------------------------------------------------ RBAC

# The spec's least RBAC, to the letter: nothing else, nowhere else.
EXPECTED_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list"]},
    {
        "apiGroups": ["batch"],
        "resources": ["cronjobs"],
        "resourceNames": [f"{RELEASE}-trainer"],
        "verbs": ["get"],
    },
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [NAME],
        "verbs": ["get", "update", "patch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]


@pytest.mark.parametrize("scenario", ["default", "retraining-tuned", "production"])
def test_controller_role_is_exactly_the_least_rbac(renders: Renders, scenario: str) -> None:
    rendered = renders(scenario)
    role = _one(rendered, "Role", CONTROLLER)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == EXPECTED_RULES
    account = _one(rendered, "ServiceAccount", CONTROLLER)
    assert account["metadata"]["name"] == NAME and account["automountServiceAccountToken"] is False
    binding = _one(rendered, "RoleBinding", CONTROLLER)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")
    # The names it may touch are the objects the chart renders.
    assert _one(rendered, "CronJob", "trainer")["metadata"]["name"] == EXPECTED_RULES[1]["resourceNames"][0]
    assert (
        _one(rendered, "ConfigMap", CONTROLLER)["metadata"]["name"] == EXPECTED_RULES[2]["resourceNames"][0]
    )


def test_runs_use_the_trainer_identity_not_the_controllers(default: Rendered, values: dict[str, Any]) -> None:
    """A run's pod (the CronJob template the controller copies) has no token and no Role; its Job
    goes away by itself (the CronJob's history limits do not cover the controller's Jobs)."""
    job = _one(default, "CronJob", "trainer")["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == RELEASE and pod["automountServiceAccountToken"] is False
    assert job["ttlSecondsAfterFinished"] == values["trainer"]["job"]["ttlSecondsAfterFinished"]


# ------------------------------------------------------------------------------ state and token


def test_state_configmap_has_no_data_and_survives_uninstall(default: Rendered) -> None:
    configmap = _one(default, "ConfigMap", CONTROLLER)
    # No data key at all: Helm never owns `data`, so no upgrade (server-side or three-way merge)
    # removes or resets the state the controller wrote (the template's comment says why).
    assert set(configmap) == {"apiVersion", "kind", "metadata"}
    assert configmap["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_token_secret_is_generated_for_both_sides(default: Rendered) -> None:
    secret = _one(default, "Secret", CONTROLLER)
    assert secret["metadata"]["name"] == TOKEN_SECRET
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 32 and token.isalnum()
    assert _env(_controller(default))["RETRAINING_WEBHOOK_TOKEN"]["secretKeyRef"]["name"] == TOKEN_SECRET
    assert _alertmanager_token_volume(default) == {
        "name": TOKEN_SECRET,
        "items": [{"key": "token", "path": "secrets/token"}],
    }


class FakeApiServer:
    """The read side of a Kubernetes API, enough for `helm template --dry-run=server`: discovery for
    the kinds the chart renders, and GET of single objects (404 unless given). Real HTTP, real JSON."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        text = helm_template([])
        self.kinds: dict[str, set[str]] = {}
        for obj in yaml.safe_load_all(text):
            if obj:
                self.kinds.setdefault(obj["apiVersion"], set()).add(obj["kind"])
        self.kinds.setdefault("v1", set()).add("Endpoints")
        self.objects = objects
        self.server = serve_json(self.answer)
        self.url = server_url(self.server)

    def _resources(self, version: str) -> dict[str, Any]:
        plural = {"Endpoints": "endpoints", "NetworkPolicy": "networkpolicies"}
        resources = [
            {"name": plural.get(kind, kind.lower() + "s"), "singularName": kind.lower(), "namespaced": True,
             "kind": kind, "verbs": ["get", "list"]}
            for kind in sorted(self.kinds.get(version, set()))
        ]  # fmt: skip
        return {"kind": "APIResourceList", "groupVersion": version, "resources": resources}

    def answer(
        self, path: str, _query: dict[str, list[str]], _auth: str | None
    ) -> tuple[int, dict[str, Any]]:
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = [
                {"name": version.split("/")[0], "versions": [{"groupVersion": version, "version": version.split("/")[1]}],
                 "preferredVersion": {"groupVersion": version, "version": version.split("/")[1]}}
                for version in self.kinds if "/" in version
            ]  # fmt: skip
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/api/v1":
            return 200, self._resources("v1")
        if path.startswith("/apis/") and path.count("/") == 3:
            return 200, self._resources(path.removeprefix("/apis/"))
        if path in self.objects:
            return 200, self.objects[path]
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
        }

    def render(self, tmp_path: Path) -> Rendered:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text("")
        args = ["--dry-run=server", "--disable-openapi-validation", "--kube-apiserver", self.url]
        result = run(
            [find_helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
        assert result.returncode == 0, result.stderr
        return Rendered("fake-api", result.stdout, [o for o in yaml.safe_load_all(result.stdout) if o])

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fake_api() -> Iterator[type[FakeApiServer]]:
    made: list[FakeApiServer] = []

    class Tracked(FakeApiServer):
        def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
            super().__init__(objects)
            made.append(self)

    yield Tracked
    for server in made:
        server.close()


def _token(rendered: Rendered) -> str:
    return base64.b64decode(rendered.get("Secret", TOKEN_SECRET)["data"]["token"]).decode()


def test_token_is_kept_across_upgrades(fake_api: type[FakeApiServer], tmp_path: Path) -> None:
    """The first install generates the token; an upgrade renders with the Secret in the cluster
    (Helm's lookup) and keeps it, so Alertmanager and the controller never disagree."""
    first = _token(fake_api({}).render(tmp_path))
    installed = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": TOKEN_SECRET,
            "namespace": NAMESPACE,
            # What `helm install` leaves on it: the upgrade's ownership check wants them.
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {
                "meta.helm.sh/release-name": RELEASE,
                "meta.helm.sh/release-namespace": NAMESPACE,
            },
        },
        "data": {"token": base64.b64encode(first.encode()).decode()},
    }
    upgrade = fake_api({f"/api/v1/namespaces/{NAMESPACE}/secrets/{TOKEN_SECRET}": installed})
    assert _token(upgrade.render(tmp_path)) == first
    assert _token(upgrade.render(tmp_path)) == first
    # Without the Secret in the cluster (a fresh install, or a renderer with no cluster) it is new.
    assert _token(fake_api({}).render(tmp_path)) != first


# ------------------------------------------------------------------------------ Alertmanager


def _alertmanager_token_volume(rendered: Rendered) -> dict[str, Any]:
    deployment = _one(rendered, "Deployment", "alertmanager")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (secret,) = [s["secret"] for s in volumes["config"]["projected"]["sources"] if "secret" in s]
    return secret


def test_alertmanager_reads_the_token_where_its_config_says(default: Rendered) -> None:
    config = _alertmanager_config(default)
    _route, webhook = _hook(config)
    assert webhook["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": TOKEN_PATH}
    deployment = _one(default, "Deployment", "alertmanager")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # One projected volume: the config file at its root, the token under secrets/.
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    sources = volume["projected"]["sources"]
    assert {"configMap": {"name": f"{RELEASE}-alertmanager"}} in sources
    item = _alertmanager_token_volume(default)["items"][0]
    assert f"{mounts['config']}/{item['path']}" == TOKEN_PATH
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in container["args"]


def test_alertmanager_routes_quality_and_drift_alerts_to_the_controller(default: Rendered) -> None:
    route, webhook = _hook(_alertmanager_config(default))
    assert route["matchers"] == [
        'alertname=~"ModelQualityDegraded|DataDriftDetected|PredictionDriftDetected"'
    ]
    assert route["continue"] is True  # the default receiver gets them as well
    assert webhook["url"] == f"http://{NAME}:8080/v1/alerts"
    assert webhook["send_resolved"] is False
    # Every alert routed there is a rule of the rules file.
    rules = yaml.safe_load(RULES_FILE.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"ModelQualityDegraded", "DataDriftDetected", "PredictionDriftDetected"} <= alerts


def test_alertmanager_url_follows_the_release_name(default: Rendered) -> None:
    assert _hook(_alertmanager_config(default))[1]["url"] == FILE_URL  # the file names release "mlops"
    result = run([find_helm(), "template", "prod", str(CHART), "--namespace", "ml"])
    assert result.returncode == 0, result.stderr
    rendered = Rendered("prod", result.stdout, [o for o in yaml.safe_load_all(result.stdout) if o])
    config = _alertmanager_config(rendered, "prod")
    _route, webhook = _hook(config)
    service = _one(rendered, "Service", CONTROLLER)
    assert service["metadata"]["name"] == "prod-mlops-retrain-controller"
    assert webhook["url"] == f"http://{service['metadata']['name']}:8080/v1/alerts"
    # Apart from the URL, the release gets the shipped file byte for byte.
    shipped = ALERTMANAGER_FILE.read_text().replace(FILE_URL, webhook["url"])
    assert rendered.get("ConfigMap", "prod-mlops-alertmanager")["data"]["alertmanager.yml"] == shipped


def test_alertmanager_routes_the_configured_trigger_alerts(renders: Renders) -> None:
    route, _webhook = _hook(_alertmanager_config(renders("retraining-tuned")))
    assert route["matchers"] == [
        'alertname=~"ModelQualityDegraded|PredictorHighErrorRate|DataDriftDetected|PredictionDriftDetected"'
    ]


@pytest.mark.parametrize("scenario", ["default", "retraining-tuned"])
def test_rendered_alertmanager_config_passes_amtool(renders: Renders, scenario: str, tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: run `make system-deps` (Debian package prometheus-alertmanager)"
    config = renders(scenario).get("ConfigMap", f"{RELEASE}-alertmanager")["data"]["alertmanager.yml"]
    (tmp_path / "alertmanager.yml").write_text(config)
    result = subprocess.run(
        [amtool, "check-config", str(tmp_path / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ network


def test_only_alertmanager_and_prometheus_reach_the_controller(renders: Renders) -> None:
    for scenario, extra_peers in (("default", []), ("kube-prometheus-stack", ["monitoring"])):
        rendered = renders(scenario)
        policy = rendered.get("NetworkPolicy", NAME)
        deployment = _one(rendered, "Deployment", CONTROLLER)
        assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        (rule,) = policy["spec"]["ingress"]
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        components = [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in rule["from"]
            if "podSelector" in p
        ]
        assert components == ["alertmanager", "prometheus"]
        namespaces = [
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in rule["from"]
            if "namespaceSelector" in p
        ]
        assert namespaces == extra_peers


# ------------------------------------------------------------------------------ training runs


def _trainer_containers(rendered: Rendered) -> dict[str, dict[str, Any]]:
    found = {}
    for obj, template in rendered.workloads():
        if labels(template).get("app.kubernetes.io/component") == "trainer":
            (container,) = containers(template, init=False)
            found[obj["kind"]] = container
    return found


@pytest.mark.parametrize(
    ("scenario", "secret"),
    [
        ("default", {"name": f"{RELEASE}-ledger-database", "key": "url"}),
        ("ledger-external", {"name": "ledger-db", "key": "uri"}),
        ("production", {"name": "ledger-database", "key": "url"}),
        ("ledger-off", None),
    ],
)
def test_training_runs_and_the_controller_read_the_ledger(
    renders: Renders, scenario: str, secret: dict[str, str] | None
) -> None:
    rendered = renders(scenario)
    clients = _trainer_containers(rendered)
    assert set(clients) >= {"Job", "CronJob"}
    clients["controller"] = _controller(rendered)
    for kind, container in clients.items():
        if secret is None:
            assert "TRAINER_LEDGER_DATABASE_URL" not in env_names(container), kind
        else:
            assert env_value(container, "TRAINER_LEDGER_DATABASE_URL")["valueFrom"] == {
                "secretKeyRef": secret
            }, kind
    if scenario == "production":  # the external database: its port opened for both
        for component in ("trainer", CONTROLLER):
            policy = rendered.get("NetworkPolicy", f"{RELEASE}-{component}-egress")
            assert {"ports": [{"port": 5432, "protocol": "TCP"}]} in policy["spec"]["egress"], component


# ------------------------------------------------------------------------------ the app behind it


def test_probes_routes_and_metrics_exist_in_the_controller(
    default: Rendered, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The probes, the webhook path Alertmanager posts to and every trainer_controller_* series the
    alert rules and the dashboard read are the controller app's own (local store: no cluster here)."""
    from fastapi.testclient import TestClient

    from tests.chart.test_rendered_settings import _settings_from
    from trainer.controller.app import create_app
    from trainer.controller.service import build_service

    container = _controller(default)
    controller, trainer = _settings_from(container, monkeypatch)
    assert controller.port == container["ports"][0]["containerPort"]
    local = controller.model_copy(update={"launcher": "local", "state_file": tmp_path / "state.json"})
    client = TestClient(create_app(local, build_service(local), trainer))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert client.get(path).status_code == 200, probe
    path = _hook(_alertmanager_config(default))[1]["url"].split(":8080", 1)[1]
    assert client.post(path, json={}).status_code == 401  # the route exists and wants the token
    assert (
        client.post(path, json={}, headers={"Authorization": f"Bearer {controller.token}"}).status_code == 422
    )
    exposed = client.get("/metrics").text
    dashboard = (CHART / "dashboards" / "mlops.json").read_text()
    read = set(
        re.findall(r"trainer_controller_[a-z_]+", RULES_FILE.read_text() + json.dumps(json.loads(dashboard)))
    )
    assert read, "nothing reads the controller's metrics"
    missing = sorted(name for name in read if not re.search(rf"^{name}[{{ ]", exposed, re.M))
    assert not missing, f"read by rules or dashboard, not exported by the controller: {missing}"
    # Exported from the start (any value: controller tests earlier in the same process may have counted).
    assert re.search(r'^trainer_controller_retrain_runs_total\{outcome="failed"\} \d', exposed, re.M)
    assert re.search(r'^trainer_controller_rollbacks_total\{model_name="hotel-adr"\} \d', exposed, re.M)
