"""HTTP routes: parse, call the inference service, shape the response. No MLflow, no pandas here.

`public` holds the probes and the model metadata; `protected` the predict and samples routes, which
app.py guards with the bearer token when PREDICTOR_API_TOKEN is set.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor

from predictor import metrics
from predictor.errors import BatchTooLarge, LedgerUnavailable, ModelNotReady, Unauthorized
from predictor.inference import InferenceService
from predictor.ledger import prediction_id
from predictor.ledger.feedback import FeedbackResponse, feedback_response, parse_feedback, request_body_schema
from predictor.ledger.writer import LedgerWriter
from predictor.logging import answering_model_var
from predictor.protocol import parse_predict_body
from predictor.responses import ErrorResponse, ModelMetadata, PredictResponse, SamplesResponse, Status

log = logging.getLogger(__name__)

PREDICT_REQUEST_REF = "#/components/schemas/PredictRequest"  # filled in with the model's fields by openapi.py


class ModelNameConvertor(StringConvertor):
    """A path segment without `:`, so `GET /v1/models/x:predict` is not read as metadata of a model "x:predict"."""

    regex = "[^/:]+"


register_url_convertor("model_name", ModelNameConvertor())

public = APIRouter()
protected = APIRouter()


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def service_of(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service  # set by create_app
    return service


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


_bearer = HTTPBearer(auto_error=False, description="PREDICTOR_API_TOKEN")


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer token check, mounted on `protected` only when a token is configured."""
    expected: str = request.app.state.settings.token
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized()


@public.get("/healthz", response_model=Status, tags=["probes"])
async def healthz() -> Response:
    """Liveness: 200 while the process runs, model or not."""
    return json_response({"status": "ok"})


@public.get("/readyz", response_model=Status, responses=_errors(503), tags=["probes"])
async def readyz(request: Request) -> Response:
    """Readiness: 200 once a model version is loaded, else 503 (the pod gets no traffic)."""
    service = service_of(request)
    model = service.model(service.follower.name)
    return json_response({"status": "ready", "model_version": model.version})


@public.get(
    "/v1/models/{name:model_name}",
    response_model=ModelMetadata,
    responses=_errors(404, 503),
    tags=["kserve v1"],
)
async def model_metadata(name: str, request: Request) -> Response:
    """KServe V1 model readiness, with the served version's metadata (503 with `ready: false` until loaded)."""
    service = service_of(request)
    follower = service.follower
    try:
        model = service.model(name)
    except ModelNotReady:
        return json_response({"name": name, "ready": False, "alias": follower.alias}, status_code=503)
    challengers = service.challengers()
    return json_response(
        {**model.metadata(), "ready": True} | ({"challengers": challengers} if challengers else {})
    )


@protected.post(
    "/v1/models/{name:model_name}:predict",
    response_model=PredictResponse,
    responses=_errors(401, 404, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": PREDICT_REQUEST_REF}}},
        }
    },
    tags=["kserve v1"],
)
async def predict(name: str, request: Request) -> Response:
    """Predict one row per record: KServe V1 `instances`, or MLflow `dataframe_records` / `dataframe_split`.

    Under a canary split (PREDICTOR_CANARY_ALIAS) a sticky share of routing keys (the X-Routing-Key header,
    else the request id) is answered by the canary version; `model_version` and `model_alias` say which.

    Records are objects keyed by the model's input columns (see the request schema). Fields the model does not
    know are rejected (422) unless PREDICTOR_EXTRA_FIELDS=ignore; more than PREDICTOR_MAX_BATCH_SIZE rows → 413.
    """
    service = service_of(request)
    model = service.model(name)
    settings = request.app.state.settings
    body = await read_body(request, settings.max_body_bytes)
    rows = parse_predict_body(body, model.schema, max_rows=settings.max_batch_size)
    request_id = request.state.request_id
    model = service.route(model, request.headers.get(settings.routing_key_header) or request_id)
    answering_model_var.set((model.name, model.version))  # the access log names the version that answered
    predictions = await service.predict(model, rows, request_id)
    return json_response(
        {
            "predictions": predictions,
            "prediction_ids": [prediction_id(request_id, row) for row in range(len(predictions))],
            "model_name": model.name,
            "model_version": model.version,
            "model_alias": model.ref.alias,
            "request_id": request_id,
        }
    )


@protected.post(
    "/v1/models/{name:model_name}:feedback",
    status_code=202,
    response_model=FeedbackResponse,
    responses=_errors(401, 404, 413, 422, 503),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": request_body_schema()}}}
    },
    tags=["feedback"],
)
async def feedback(name: str, request: Request) -> Response:
    """Store the true values of earlier predictions (delayed labels), by prediction id.

    202 only once every label is stored durably; an id sent again replaces its label (last write wins).
    Ids without a prediction in the ledger are stored too and reported as unmatched. 503 while the
    ledger database is down: nothing was stored, send the same body again.
    """
    service = service_of(request)
    service.check_served(name)
    settings = request.app.state.settings
    ledger: LedgerWriter | None = request.app.state.ledger
    labels = parse_feedback(
        await read_body(request, settings.max_body_bytes), max_labels=settings.feedback_max_labels
    )
    if ledger is None:
        raise LedgerUnavailable("no ledger database is configured (PREDICTOR_LEDGER_DATABASE_URL)")
    if not ledger.ready:
        raise LedgerUnavailable("the ledger database is not reachable yet")
    try:
        outcome = await run_in_threadpool(ledger.store.store_labels, labels)
    except sa.exc.SQLAlchemyError as exc:
        log.warning(
            "could not store labels", extra={"labels": len(labels), "error": str(getattr(exc, "orig", exc))}
        )
        raise LedgerUnavailable("the ledger database did not answer; nothing was stored") from None
    unmatched = len(outcome.unmatched_ids)
    metrics.FEEDBACK_LABELS.labels("matched").inc(outcome.matched)
    metrics.FEEDBACK_LABELS.labels("unmatched").inc(unmatched)
    metrics.FEEDBACK_LABELS.labels("duplicate").inc(outcome.duplicates)
    return json_response(feedback_response(outcome), status_code=202)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes without buffering more: a huge body must not OOM the pod."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BatchTooLarge(f"request body of {declared} bytes exceeds PREDICTOR_MAX_BODY_BYTES ({limit})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BatchTooLarge(f"request body exceeds PREDICTOR_MAX_BODY_BYTES ({limit})")
        chunks.append(chunk)
    return b"".join(chunks)


@protected.get("/v1/samples", response_model=SamplesResponse, responses=_errors(401), tags=["drift monitor"])
async def samples(
    request: Request,
    since: Annotated[
        float, Query(ge=0, description="unix seconds; only samples received strictly after")
    ] = 0,
    limit: Annotated[
        int | None, Query(ge=1, description="at most this many (oldest first); default: all")
    ] = None,
) -> Response:
    """Recent predicted rows (features, prediction, version, request id), oldest first, for the drift monitor."""
    buffer = service_of(request).samples
    selected = buffer.since(since, min(limit or buffer.size, buffer.size))  # a huge limit overflows islice
    return json_response(
        {
            "samples": [s.as_dict() for s in selected],
            "buffer_size": buffer.size,
            "buffered": len(buffer),
            "dropped_total": buffer.dropped_total,
        }
    )
