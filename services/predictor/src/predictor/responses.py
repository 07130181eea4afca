"""Response bodies of the HTTP API, as Pydantic models: they document OpenAPI (the routes send orjson bytes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    error: str = Field(description="what went wrong, for a human")
    detail: list[dict[str, Any]] | None = Field(
        None,
        description="422 only: one entry per fault, with `loc` (e.g. [`instances`, 0, `lead_time`]), `msg`, `type`",
    )


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="one prediction per input row, in order")
    prediction_ids: list[str] = Field(
        description="one id per prediction (`<request_id>:<row>`), to send its true value to `:feedback` later"
    )
    model_name: str
    model_version: str = Field(description="the registry version that produced these predictions")
    model_alias: str = Field(
        description="the alias that answered: the champion's, or the canary's for its share"
    )
    request_id: str = Field(description="also sent as the X-Request-ID header")


class ModelMetadata(BaseModel):
    """KServe V1 model readiness, plus what is served."""

    name: str
    ready: bool
    alias: str
    version: str | None = None
    run_id: str | None = None
    signature: dict[str, Any] | None = Field(
        None, description="the MLflow signature: `inputs`, `outputs` column specs"
    )
    loaded_at: str | None = Field(None, description="ISO 8601, UTC")
    compiled: str | None = Field(
        None,
        description="the proven faster evaluation in use (PREDICTOR_COMPILED_MODEL), e.g. "
        "`lookup-encoder+treelite(<160 rows)`; null: the model's own predict",
    )
    challengers: list[dict[str, Any]] | None = Field(
        None,
        description="the shadow and canary aliases when configured: `role`, `alias`, `version`, `ready` (canary: `percent`)",
    )


class SampleOut(BaseModel):
    timestamp: float = Field(description="unix seconds when the request was received")
    request_id: str
    model_name: str
    model_version: str
    features: dict[str, Any]
    prediction: Any
    shadow_version: str | None = Field(None, description="only when a shadow version scored the row too")
    shadow_prediction: Any = Field(
        None, description="the shadow version's prediction (never returned by predict)"
    )


class SamplesResponse(BaseModel):
    samples: list[SampleOut] = Field(description="oldest first")
    buffer_size: int = Field(description="capacity of the ring buffer (PREDICTOR_SAMPLE_BUFFER_SIZE)")
    buffered: int = Field(description="samples held now")
    dropped_total: int = Field(description="samples evicted since start-up because the buffer was full")


class Status(BaseModel):
    status: str
    model_version: str | None = None
