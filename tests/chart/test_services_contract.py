"""The chart and the services agree: env names are Settings fields, probes hit real routes and ports.

These import the services' own `Settings` and the predictor's FastAPI app instead of re-typing names.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from tests.chart.conftest import (
    EXTRA_ENV_NAMES,
    SCENARIOS,
    Rendered,
    Renders,
    containers,
    env_names,
    env_value,
)

# Read by every service outside its prefix (docs/interfaces.md, "Names"), or by the MLflow client
# library itself (MLFLOW_DISABLE_TELEMETRY), not by a Settings class.
COMMON_ENV = {"MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "LOG_LEVEL", "LOG_FORMAT"}
# Container name -> the settings classes that read its environment. The retrain controller
# (`trainer controller`) reads its own RETRAINING_* settings and, for the rollback check, the
# trainer's own TRAINER_* ones.
SETTINGS: dict[str, tuple[str, ...]] = {
    "trainer": ("trainer.config.Settings",),
    "predictor": ("predictor.config.Settings",),
    "drift-monitor": ("drift_monitor.config.Settings",),
    "retrain-controller": ("trainer.controller.config.ControllerSettings", "trainer.config.Settings"),
}


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"cannot import {dotted} ({exc}): is the service installed (`make setup`)?", pytrace=False
        )


def settings_classes(container: str) -> list[Any]:
    return [_import(dotted) for dotted in SETTINGS[container]]


def env_vars_of_container(container: str) -> set[str]:
    """Every variable the container's settings classes read."""
    return set().union(*(env_vars_of(cls) for cls in settings_classes(container)))


def env_vars_of(settings: Any) -> set[str]:
    """The environment variable names a pydantic-settings class reads."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif alias is not None:  # AliasChoices
            names.update(str(choice).upper() for choice in alias.choices)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_env_names_are_settings_fields(renders: Renders, scenario: str) -> None:
    seen = set()
    for obj, template in renders(scenario).workloads():
        for container in containers(template, init=False):
            if container["name"] not in SETTINGS:
                continue
            seen.add(container["name"])
            known = env_vars_of_container(container["name"]) | COMMON_ENV
            known |= EXTRA_ENV_NAMES.get(scenario, set())
            unknown = sorted(set(env_names(container)) - known)
            assert not unknown, (
                f"{obj['kind']}/{obj['metadata']['name']}: {unknown} are not settings of {container['name']}"
            )
    assert seen == set(SETTINGS)


def test_chart_wired_names_exist_in_settings() -> None:
    """The names the templates set themselves (not from values) are real settings."""
    wired = {
        "trainer": {"TRAINER_MODEL_NAME", "TRAINER_CHAMPION_ALIAS"},
        "predictor": {
            "PREDICTOR_HOST",
            "PREDICTOR_PORT",
            "PREDICTOR_MODEL_NAME",
            "PREDICTOR_MODEL_ALIAS",
            "PREDICTOR_API_TOKEN",
            "PREDICTOR_LEDGER_DATABASE_URL",
            "PREDICTOR_LEDGER_SAMPLE_RATE",
            "PREDICTOR_LEDGER_RETENTION_DAYS",
            "PREDICTOR_LEDGER_MAX_ROWS",
            "PREDICTOR_LEDGER_QUEUE_ROWS",
        },
        "drift-monitor": {
            "DRIFT_MONITOR_MODEL_NAME",
            "DRIFT_MONITOR_NAMESPACE",
            "DRIFT_MONITOR_PREDICTOR_SERVICE",
            "DRIFT_MONITOR_PREDICTOR_PORT",
            "DRIFT_MONITOR_PREDICTOR_API_TOKEN",
            "DRIFT_MONITOR_PUSHGATEWAY_URL",
            "DRIFT_MONITOR_LEDGER_DATABASE_URL",
            "DRIFT_MONITOR_LABEL_DELAY_SECONDS",
            "DRIFT_MONITOR_QUALITY_WINDOW_SECONDS",
            "DRIFT_MONITOR_QUALITY_MIN_LABELLED_ROWS",
            "DRIFT_MONITOR_QUALITY_MAX_MAE_RATIO",
            "DRIFT_MONITOR_LABELS_MISSING_AFTER_SECONDS",
        },
        "retrain-controller": {
            "RETRAINING_HOST",
            "RETRAINING_PORT",
            "RETRAINING_ENABLED",
            "RETRAINING_DRY_RUN",
            "RETRAINING_COOLDOWN_SECONDS",
            "RETRAINING_DAILY_CAP",
            "RETRAINING_TRIGGER_ALERTS",
            "RETRAINING_DRIFT_TRIGGER_ENABLED",
            "RETRAINING_DRIFT_ALERTS",
            "RETRAINING_DRIFT_MIN_AGE_SECONDS",
            "RETRAINING_WEBHOOK_TOKEN",
            "RETRAINING_LAUNCHER",
            "RETRAINING_STATE_CONFIGMAP",
            "RETRAINING_TRAINER_CRONJOB",
            "RETRAINING_NAMESPACE",
            "RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS",
            "TRAINER_MODEL_NAME",
            "TRAINER_CHAMPION_ALIAS",
            "TRAINER_LEDGER_DATABASE_URL",
            "TRAINER_ROLLBACK_MIN_LABELS",
            "TRAINER_ROLLBACK_MARGIN",
            "TRAINER_ROLLBACK_WINDOW_SECONDS",
            "TRAINER_LABEL_DELAY_SECONDS",
        },
    }
    wired["trainer"].add("TRAINER_LEDGER_DATABASE_URL")
    for container, names in wired.items():
        missing = sorted(names - env_vars_of_container(container))
        assert not missing, f"{container} settings lack {missing}"


def _predictor_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    try:
        from predictor.app import create_app
        from predictor.config import Settings
    except ImportError as exc:
        pytest.fail(
            f"cannot import predictor.app.create_app / predictor.config.Settings: {exc}", pytrace=False
        )
    return create_app(Settings()), Settings()


def test_predictor_probes_hit_real_routes_on_the_real_port(
    default: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    app, settings = _predictor_app(monkeypatch)
    # Ask the app itself (no lifespan: no model is loaded): a probe path that does not exist is a 404,
    # whatever the router structure. /readyz answers 503 here, /healthz 200.
    client = TestClient(app)
    deployment = next(
        d for d in default.of_kind("Deployment") if d["metadata"]["name"].endswith("-predictor")
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        status = client.get(get["path"]).status_code
        assert status in (200, 503), (
            f"{probe} {get['path']} answers {status}: not a probe route of the predictor"
        )
        assert ports[get["port"]] == int(env_value(container, "PREDICTOR_PORT")["value"])
    # The container port is what the app binds to, and the app's own default agrees with the chart.
    assert settings.port == ports["http"]
    # The helm test pod and Prometheus use these two.
    assert "/v1/models/{name}:predict" in app.openapi()["paths"]  # the helm test pod's route
    assert client.get("/metrics").status_code == 200  # Prometheus' scrape path


def test_mlflow_probe_path_exists_in_mlflow_server() -> None:
    """The MLflow container's probes use /health, a route of the MLflow server the image runs."""
    from mlflow.server import app

    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/health" in rules
