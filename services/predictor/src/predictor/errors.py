"""Service errors: each class fixes its HTTP status; one handler in app.py turns them into `{"error": ...}`."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error a request can end with: the class fixes the HTTP status, app.py turns it into `{"error": ...}`."""

    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        detail: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.detail = detail
        self.headers = headers


class InvalidInput(ServiceError):
    """The body is not JSON, has no known shape, or a record does not match the model's signature."""

    status_code = 422


class BatchTooLarge(ServiceError):
    """More rows, or a larger body, than the settings allow."""

    status_code = 413


class Unauthorized(ServiceError):
    """PREDICTOR_API_TOKEN is set and the request lacks the matching bearer token."""

    status_code = 401

    def __init__(self, message: str = "missing or invalid bearer token"):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotFound(ServiceError):
    """The route names another model than the one this predictor serves."""

    status_code = 404


class ModelNotReady(ServiceError):
    """No version is loaded yet (start-up, MLflow outage): retry later, another replica may answer."""

    status_code = 503


class LedgerUnavailable(ServiceError):
    """The ledger database is not configured, not migrated yet, or not answering: nothing was stored, retry."""

    status_code = 503

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "5"})


class PredictionFailed(ServiceError):
    """The model raised on input that passed validation: a model bug, not a client error."""

    status_code = 500


class ModelLoadError(Exception):
    """A model version could not be loaded or does not fit the served schema (never reaches HTTP)."""


class MlflowUnavailable(ModelLoadError):
    """The MLflow server did not answer (the follower keeps retrying; the message says which server)."""
