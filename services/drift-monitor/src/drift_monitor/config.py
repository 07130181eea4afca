"""Drift monitor settings: environment variables (prefix DRIFT_MONITOR_), some overridden by CLI flags.

Only this module reads the environment; everything else receives a `Settings` object.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFT_MONITOR_", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = Field(validation_alias="MLFLOW_TRACKING_URI")
    """MLflow server holding the model versions and their reference artifacts (the standard variable)."""
    mlflow_wait_seconds: float = Field(60, ge=0)
    """How long to retry an unreachable MLflow server before the run fails."""
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

    @field_validator(
        "namespace", "predictor_api_token", "pushgateway_url", "monitoring_experiment", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # a chart renders an unset value as ""

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
