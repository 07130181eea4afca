"""Predictor settings: one object, read from the environment (prefix PREDICTOR_).

Only this module reads the environment; `create_app(settings)` takes the object, so tests build it directly.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from predictor.ledger.store import normalise_url

# Average nightly room prices span roughly 0–500; buckets in the unit of the model's output.
DEFAULT_PREDICTION_BUCKETS = (0, 25, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 750, 1000)


def _split_floats(value: object) -> object:
    if isinstance(value, str):
        return [float(item) for item in value.split(",") if item.strip()]
    return value


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value  # a chart renders an unset value as ""


class Settings(BaseSettings):
    """What the server serves and how, validated at start-up (bad values exit 2); `create_app` takes one."""

    model_config = SettingsConfigDict(env_prefix="PREDICTOR_", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    """MLflow tracking server (the standard MLFLOW_TRACKING_URI variable); unset → MLflow's own default."""
    log_level: LogLevel = Field("INFO", validation_alias="LOG_LEVEL")
    """Log level of the predictor and uvicorn (the shared LOG_LEVEL variable, any case)."""
    log_format: Literal["json", "text"] | None = Field(None, validation_alias="LOG_FORMAT")
    """`json` or `text` (the shared LOG_FORMAT variable); unset → text on a terminal, else json."""
    model_name: str = "hotel-adr"
    """Registered model to serve; also the `{name}` of the KServe routes."""
    model_alias: str = "champion"
    """Registry alias to follow: the version it points to is served."""
    host: str = "0.0.0.0"
    """Bind address (`--host` overrides)."""
    port: int = Field(8080, ge=1, le=65535)
    """Bind port (`--port` overrides)."""
    poll_interval_seconds: float = Field(30, gt=0)
    """How often the alias is checked for a new version."""
    max_batch_size: int = Field(1000, ge=1)
    """Rows per request; more is answered with 413."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest predict request body read; more is answered with 413 before it is buffered or parsed."""
    sample_buffer_size: int = Field(10_000, ge=1)
    """Predicted rows kept in memory for the drift monitor (oldest dropped first)."""
    api_token: SecretStr | None = None
    """When set, the predict and samples routes need `Authorization: Bearer <token>`."""
    extra_fields: Literal["forbid", "ignore"] = "forbid"
    """Fields a record has but the model's signature lacks: `forbid` → 422 naming them, `ignore` → dropped."""
    microbatch_max_rows: int = Field(2000, ge=1)
    """Upper bound on rows the micro-batcher merges into one model call (concurrent requests)."""
    inference_threads: int = Field(1, ge=1)
    """OpenMP/BLAS threads for the model call; 1 avoids thread-sync overhead on small batches."""
    compiled_model: bool = True
    """Serve a recognised tree pipeline through lookup encoders and treelite (compiled.py) when proven
    equal at load; false: always the model's own predict."""
    prediction_buckets: Annotated[list[float], NoDecode] = list(DEFAULT_PREDICTION_BUCKETS)
    """Bucket bounds of the `predictor_prediction_value` histogram, comma-separated, in the output's unit."""
    load_retry_max_seconds: float = Field(30, gt=0)
    """Longest wait between attempts to load the model at start-up (exponential backoff up to this)."""
    graceful_shutdown_seconds: float = Field(20, ge=0)
    """On SIGTERM, how long in-flight requests may take to finish before the process exits."""
    ledger_database_url: SecretStr | None = None
    """Predictions ledger and labels (`postgresql://…` or `sqlite:///file.db`); unset → no ledger, feedback answers 503."""
    ledger_sample_rate: float = Field(1.0, ge=0, le=1)
    """Share of predicted rows kept in the ledger, chosen by a hash of the prediction id (the same on every pod)."""
    ledger_retention_days: float = Field(14, gt=0)
    """Predictions and labels older than this are deleted from the ledger."""
    ledger_max_rows: int = Field(1_000_000, ge=1)
    """Upper bound on predictions in the ledger; the oldest are deleted past it."""
    ledger_queue_rows: int = Field(50_000, ge=1)
    """Sampled rows buffered in memory while the database is slow or down; more are dropped and counted."""
    feedback_max_labels: int = Field(10_000, ge=1)
    """Labels per feedback request; more is answered with 413 (`predictor labels import` for bulk loads)."""

    shadow_alias: str | None = None
    """A second alias (e.g. `challenger`) whose version scores every micro-batch off the response path; unset → no shadow."""
    shadow_queue_batches: int = Field(100, ge=1)
    """Micro-batches waiting for the shadow model; more are not shadow-scored (counted as `queue_full`)."""
    shadow_breaker_failures: int = Field(5, ge=1)
    """Consecutive shadow failures that open the circuit breaker (shadow scoring paused)."""
    shadow_breaker_seconds: float = Field(60, gt=0)
    """How long an open breaker pauses shadow scoring before trying again."""
    canary_alias: str | None = None
    """An alias (e.g. `challenger`) whose version answers PREDICTOR_CANARY_PERCENT of the traffic; unset → none."""
    canary_percent: float = Field(0, ge=0, le=100)
    """Share of routing keys (users) answered by the canary version, 0–100; the same key always gets the same arm."""
    routing_key_header: str = "X-Routing-Key"
    """Request header naming the user (or session) for the canary split; without it, the request id is the key."""

    _split_buckets = field_validator("prediction_buckets", mode="before")(_split_floats)
    _log_level_upper = field_validator("log_level", mode="before")(_upper)
    _log_format_unset = field_validator("log_format", mode="before")(_empty_is_unset)
    _ledger_unset = field_validator("ledger_database_url", mode="before")(_empty_is_unset)
    _challengers_unset = field_validator("shadow_alias", "canary_alias", mode="before")(_empty_is_unset)

    @model_validator(mode="after")
    def _challengers_differ_from_champion(self) -> Settings:
        for field in ("shadow_alias", "canary_alias"):
            if getattr(self, field) == self.model_alias:
                raise ValueError(
                    f"PREDICTOR_{field.upper()} must name another alias than PREDICTOR_MODEL_ALIAS ({self.model_alias!r})"
                )
        if self.canary_percent > 0 and self.canary_alias is None:
            raise ValueError("PREDICTOR_CANARY_PERCENT is set but PREDICTOR_CANARY_ALIAS is not")
        return self

    @field_validator("ledger_database_url")
    @classmethod
    def _supported_database(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else SecretStr(normalise_url(value.get_secret_value()))

    @field_validator("prediction_buckets")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if not value or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("prediction_buckets must be a non-empty, strictly increasing list")
        return value

    @property
    def token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None

    @property
    def ledger_url(self) -> str | None:
        return self.ledger_database_url.get_secret_value() if self.ledger_database_url else None


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
