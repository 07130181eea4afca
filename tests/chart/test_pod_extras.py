"""podLabels, podAnnotations, extraEnv, extraEnvFrom, extraVolumes and extraVolumeMounts: release-wide
values reach every pod of the release, a component's own win or add up, and nothing the chart sets
can be replaced (the render fails and says which value to change)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import (
    CHART,
    Renders,
    containers,
    env_value,
    find_helm,
    labels,
    run,
)

COMPONENTS = {
    "mlflow",
    "ledger-database",
    "trainer",
    "predictor",
    "drift-monitor",
    "prometheus",
    "pushgateway",
    "alertmanager",
    "retrain-controller",
    "test",
}


def _pods(renders: Renders) -> list[tuple[str, dict[str, Any]]]:
    rendered = renders("pod-extras")
    pods = [(labels(t)["app.kubernetes.io/component"], t) for _obj, t in rendered.workloads()]
    assert {c for c, _ in pods} == COMPONENTS
    return pods


def _main(component: str, template: dict[str, Any]) -> dict[str, Any]:
    main = containers(template, init=False)
    assert len(main) == 1, component
    return main[0]


def test_every_pod_carries_the_release_wide_labels_and_annotations(renders: Renders) -> None:
    for component, template in _pods(renders):
        pod_labels = template["metadata"]["labels"]
        assert pod_labels["team"] == ("serving" if component == "predictor" else "ml"), component
        assert pod_labels["cost-center"] == "42", component
        assert pod_labels["app.kubernetes.io/component"] == component
        annotations = template["metadata"]["annotations"]
        assert annotations["example.com/owner"] == "ml-team", component
    prometheus = dict(_pods(renders))["prometheus"]["metadata"]["annotations"]
    assert prometheus["example.com/scrape-tier"] == "internal"
    assert {"checksum/config", "checksum/rules"} <= set(prometheus), "the chart's own annotations stay"
    test_pod = dict(_pods(renders))["test"]["metadata"]["annotations"]
    assert test_pod["helm.sh/hook"] == "test"


def test_every_main_container_gets_the_extra_env_and_env_from(renders: Renders) -> None:
    for component, template in _pods(renders):
        container = _main(component, template)
        proxy = (
            "http://predictor-proxy.example:3128" if component == "predictor" else "http://proxy.example:3128"
        )
        assert [e for e in container["env"] if e["name"] == "HTTPS_PROXY"] == [
            {"name": "HTTPS_PROXY", "value": proxy}
        ]
        expected_from = [{"configMapRef": {"name": "proxy-settings"}}]
        if component == "mlflow":
            expected_from.append({"secretRef": {"name": "mlflow-s3"}})
        assert container["envFrom"] == expected_from, component
    predictor = _main("predictor", dict(_pods(renders))["predictor"])
    assert env_value(predictor, "SENTRY_DSN")["valueFrom"] == {
        "secretKeyRef": {"name": "sentry", "key": "dsn"}
    }
    assert env_value(predictor, "PREDICTOR_API_TOKEN")["valueFrom"]["secretKeyRef"]["key"] == "token"


def test_every_pod_mounts_the_extra_volumes(renders: Renders) -> None:
    for component, template in _pods(renders):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        expected = (
            {"secret": {"secretName": "trainer-ca"}}
            if component == "trainer"
            else {"configMap": {"name": "ca-bundle"}}
        )
        assert volumes["ca-bundle"] == {"name": "ca-bundle", **expected}, component
        assert "tmp" in volumes, component
        mounts = _main(component, template)["volumeMounts"]
        assert {"name": "ca-bundle", "mountPath": "/etc/ssl/extra", "readOnly": True} in mounts, component
        for init in template["spec"].get("initContainers") or []:
            assert "envFrom" not in init and all(
                m["name"] != "ca-bundle" for m in init.get("volumeMounts") or []
            )


def test_without_extras_the_pods_are_as_before(renders: Renders) -> None:
    for _obj, template in renders("default").workloads():
        for container in containers(template):
            assert "envFrom" not in container
            assert {m["name"] for m in container.get("volumeMounts") or []} <= {
                "tmp",
                "run",
                "data",
                "config",
                "rules",
            }


# A value that would replace what the chart sets, and the words the failure must say.
REFUSED = {
    "selector label": (
        ['podLabels={"app.kubernetes.io/component": "x"}'],
        "app.kubernetes.io/component is a label the chart sets",
    ),
    "standard label of a component": (['trainer.podLabels={"helm.sh/chart": "x"}'], "podLabels of trainer"),
    "chart annotation": (
        ['monitoring.prometheus.podAnnotations={"checksum/config": "x"}'],
        "checksum/config is an annotation the chart sets",
    ),
    "wired env": (
        ['predictor.extraEnv=[{"name": "PREDICTOR_MODEL_NAME", "value": "x"}]'],
        "PREDICTOR_MODEL_NAME is set by the chart",
    ),
    "env map name": (
        ['trainer.extraEnv=[{"name": "TRAINER_SEED", "value": "1"}]'],
        "TRAINER_SEED is set by the chart or the component's env map",
    ),
    "release-wide env": (
        ['extraEnv=[{"name": "MLFLOW_TRACKING_URI", "value": "x"}]'],
        "MLFLOW_TRACKING_URI is set by the chart",
    ),
    "volume name": (
        ['mlflow.extraVolumes=[{"name": "data", "emptyDir": {}}]'],
        "already has a volume named data",
    ),
    "database env": (
        ['ledger.database.internal.extraEnv=[{"name": "PGDATA", "value": "/tmp/pgdata"}]'],
        "PGDATA is set by the chart",
    ),
    "ledger env": (
        ['predictor.extraEnv=[{"name": "PREDICTOR_LEDGER_DATABASE_URL", "value": "sqlite:///x.db"}]'],
        "PREDICTOR_LEDGER_DATABASE_URL is set by the chart",
    ),
    "controller wiring": (
        ['retraining.extraEnv=[{"name": "RETRAINING_LAUNCHER", "value": "local"}]'],
        "RETRAINING_LAUNCHER is set by the chart",
    ),
    "controller env map": (
        ['retraining.env={"RETRAINING_WEBHOOK_TOKEN": "x"}'],
        "RETRAINING_WEBHOOK_TOKEN is set by the chart",
    ),
    "trainer ledger env": (
        ['trainer.extraEnv=[{"name": "TRAINER_LEDGER_DATABASE_URL", "value": "sqlite:///x.db"}]'],
        "TRAINER_LEDGER_DATABASE_URL is set by the chart",
    ),
    "database volume": (
        ['ledger.database.internal.extraVolumes=[{"name": "run", "emptyDir": {}}]'],
        "already has a volume named run",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_chart_sets_cannot_be_replaced(case: str) -> None:
    assignments, message = REFUSED[case]
    args = [arg for a in assignments for arg in ("--set-json", a)]
    result = run([find_helm(), "template", "mlops", str(CHART), *args])
    assert result.returncode != 0, f"{case}: rendered although it replaces the chart's own"
    assert message in result.stderr, result.stderr
