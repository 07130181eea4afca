"""Retrain controller settings: one object, read from the environment (prefix RETRAINING_).

The rollback check also reads the trainer's own `Settings` (TRAINER_*, MLFLOW_TRACKING_URI): the
controller runs in the trainer image with the trainer's environment.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value  # a chart renders an unset value as ""


class ControllerSettings(BaseSettings):
    """What the controller reacts to, its guard rails and where it keeps them (bad values exit 2)."""

    model_config = SettingsConfigDict(env_prefix="RETRAINING_", extra="ignore", protected_namespaces=())

    log_level: LogLevel = Field("INFO", validation_alias="LOG_LEVEL")
    """Log level (the shared LOG_LEVEL variable, any case)."""
    log_format: Literal["json", "text"] | None = Field(None, validation_alias="LOG_FORMAT")
    """`json` or `text` (the shared LOG_FORMAT variable); unset → text on a terminal, else json."""
    enabled: bool = True
    """Kill switch: false → every alert is answered `skipped/disabled` and nothing starts."""
    dry_run: bool = False
    """Decide and record as usual, start nothing: decisions are `dry_run/<reason>`, no guard rail consumed."""
    cooldown_seconds: float = Field(21600, ge=0)
    """After a run finishes, no new run for this long."""
    daily_cap: int = Field(3, ge=0)
    """At most this many runs started in any 24 hours."""
    trigger_alerts: Annotated[list[str], NoDecode] = ["ModelQualityDegraded"]
    """Alert names that start a run (comma-separated)."""
    drift_trigger_enabled: bool = False
    """Whether the drift alerts may start a run too (once they have lasted DRIFT_MIN_AGE_SECONDS)."""
    drift_alerts: Annotated[list[str], NoDecode] = ["DataDriftDetected", "PredictionDriftDetected"]
    """Alert names that count as drift (comma-separated)."""
    drift_min_age_seconds: float = Field(3600, ge=0)
    """A drift alert starts a run only once it has been firing this long (now − startsAt)."""
    webhook_token: SecretStr
    """Bearer token Alertmanager sends (`Authorization: Bearer <token>`); required, not empty."""
    host: str = "0.0.0.0"
    """Bind address."""
    port: int = Field(8080, ge=1, le=65535)
    """Bind port."""
    launcher: Literal["local", "kubernetes"] = "local"
    """`local`: `TRAIN_COMMAND` as a process, state in `STATE_FILE`; `kubernetes`: a Job, state in a ConfigMap."""
    state_file: Path = Path("retraining-state.json")
    """Guard-rail state of the local launcher (JSON; written atomically, locked while updated)."""
    state_configmap: str | None = None
    """Kubernetes launcher: the ConfigMap (created by the chart) whose key `state.json` holds the state."""
    trainer_cronjob: str | None = None
    """Kubernetes launcher: the trainer CronJob whose jobTemplate each run's Job copies."""
    namespace: str | None = None
    """Kubernetes launcher: namespace of the Jobs, the ConfigMap and the Events; unset → the pod's own."""
    train_command: str = "trainer train"
    """Local launcher: the command of a run (split like a shell would, no shell features)."""
    run_log_dir: Path | None = None
    """Local launcher: each run's `<name>.log` and `<name>.exit`; unset → the state file's directory."""
    status_interval_seconds: float = Field(10, gt=0)
    """How often a running run's status is checked."""
    rollback_check_interval_seconds: float = Field(60, ge=0)
    """How often the automatic rollback check runs (with TRAINER_LEDGER_DATABASE_URL set); 0 disables it."""

    _split_lists = field_validator("trigger_alerts", "drift_alerts", mode="before")(_split_csv)
    _log_level_upper = field_validator("log_level", mode="before")(_upper)
    _unset = field_validator(
        "log_format", "state_configmap", "trainer_cronjob", "namespace", "run_log_dir", mode="before"
    )(_empty_is_unset)

    @field_validator("webhook_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("train_command")
    @classmethod
    def _command_splits(cls, value: str) -> str:
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into arguments: {exc}") from exc
        if not argv:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _kubernetes_needs_its_objects(self) -> ControllerSettings:
        if self.launcher == "kubernetes":
            missing = [
                f"RETRAINING_{name.upper()}"
                for name in ("state_configmap", "trainer_cronjob")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"RETRAINING_LAUNCHER=kubernetes needs {' and '.join(missing)}")
        return self

    @property
    def token(self) -> str:
        return self.webhook_token.get_secret_value()

    @property
    def train_argv(self) -> list[str]:
        return shlex.split(self.train_command)

    @property
    def log_dir(self) -> Path:
        return self.run_log_dir or self.state_file.parent


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each invalid setting by its environment variable: `RETRAINING_PORT: Input should be ...`."""
    return "; ".join(f"{_variable(error['loc'])}: {error['msg']}" for error in exc.errors())


def _variable(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"  # a rule across fields
    name = str(loc[0])
    # An aliased field (LOG_LEVEL, LOG_FORMAT) is reported under its alias already.
    return (
        f"{ControllerSettings.model_config.get('env_prefix', '')}{name}".upper()
        if name in ControllerSettings.model_fields
        else name
    )
