"""Drift monitor settings: environment variables (prefix DRIFT_MONITOR_), some overridden by CLI flags.

Only this module reads the environment; everything else receives a `Settings` object.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from drift_monitor.ledger import normalise_url

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value  # a chart renders an unset value as ""


class Settings(BaseSettings):
    """What one monitoring run checks and where it reports, validated before the run starts (bad values exit 2)."""

    model_config = SettingsConfigDict(env_prefix="DRIFT_MONITOR_", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = Field(validation_alias="MLFLOW_TRACKING_URI")
    """MLflow server holding the model versions and their reference artifacts (the standard variable)."""
    mlflow_wait_seconds: float = Field(60, ge=0)
    """How long to retry an unreachable MLflow server before the run fails."""
    log_level: LogLevel = Field("INFO", validation_alias="LOG_LEVEL")
    """Log level (the shared LOG_LEVEL variable, any case)."""
    log_format: Literal["json", "text"] | None = Field(None, validation_alias="LOG_FORMAT")
    """`json` or `text` (the shared LOG_FORMAT variable); unset → text on a terminal, else json."""
    model_name: str = "hotel-adr"
    """Registered model whose versions' reference artifacts the samples are compared with."""

    targets: Annotated[list[str], NoDecode] = []
    """Predictor base URLs to scrape. Empty means: discover the pods through the Kubernetes API."""
    namespace: str | None = None
    """Namespace of the predictor Service; unset means the namespace this pod runs in."""
    predictor_service: str = "mlops-predictor"
    """Service whose EndpointSlices list the predictor pods."""
    predictor_port: int = Field(8080, gt=0, lt=65536)
    """Port used when an EndpointSlice names none."""
    predictor_api_token: SecretStr | None = None
    """Bearer token for the predictors' /v1/samples route (their PREDICTOR_API_TOKEN)."""
    scrape_timeout_seconds: float = Field(10, gt=0)
    """Per-pod timeout for GET /v1/samples; a pod slower than this counts as failed."""

    window_seconds: int = Field(3600, gt=0)
    """Only samples newer than now minus this many seconds are tested."""
    min_samples: int = Field(200, ge=1)
    """A model version with fewer samples in the window gets "not enough data" instead of a verdict."""
    p_value: float = Field(0.05, gt=0, lt=1)
    """Significance level of the tests (the q-value with the FDR correction)."""
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    """Multiple-testing correction across the features."""

    pushgateway_url: str | None = None
    """Prometheus Pushgateway to push the results to; unset means the report is only logged."""
    monitoring_experiment: str | None = None
    """MLflow experiment in which every report is recorded as a run; unset means none is recorded."""

    ledger_database_url: SecretStr | None = None
    """SQLAlchemy URL of the predictor's predictions ledger (`postgresql://user:pw@host/db`, `postgres://`,
    or `sqlite:///path.db`), read only; unset means no model quality check."""
    label_delay_seconds: int = Field(0, ge=0)
    """How long labels take to arrive: only predictions made at least this long ago are scored."""
    quality_window_seconds: int = Field(604800, gt=0)
    """Predictions made in the window (now − delay − window, now − delay] are scored (default 7 days)."""
    quality_min_labelled_rows: int = Field(100, ge=1)
    """Fewest labelled predictions of a version for ModelQualityDegraded to judge it (pushed as a series)."""
    quality_max_mae_ratio: float = Field(1.25, gt=0)
    """ModelQualityDegraded fires when the live MAE exceeds this times the training run's reference_mae (pushed)."""
    labels_missing_after_seconds: int = Field(86400, gt=0)
    """LabelsMissing fires when no label has arrived for this long while predictions flow (pushed)."""

    _log_level_upper = field_validator("log_level", mode="before")(_upper)
    _unset_when_empty = field_validator(
        "namespace",
        "predictor_api_token",
        "pushgateway_url",
        "monitoring_experiment",
        "ledger_database_url",
        "log_format",
        mode="before",
    )(_empty_is_unset)

    @field_validator("ledger_database_url")
    @classmethod
    def _supported_database(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the URL: it may hold a password.
        return SecretStr(normalise_url(value.get_secret_value())) if value is not None else None

    @field_validator("targets", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("targets")
    @classmethod
    def _strip_trailing_slash(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each invalid setting by its environment variable: `LOG_LEVEL: Input should be ...`."""
    return "; ".join(f"{_variable(error['loc'])}: {error['msg']}" for error in exc.errors())


def _variable(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"  # a rule across fields
    name = str(loc[0])
    # An aliased field (MLFLOW_TRACKING_URI, LOG_LEVEL) is reported under its alias already.
    return (
        f"{Settings.model_config.get('env_prefix', '')}{name}".upper()
        if name in Settings.model_fields
        else name
    )
