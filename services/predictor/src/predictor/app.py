"""create_app(settings) → FastAPI: wires the model follower, the inference service, routes, errors, /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from predictor import __version__, api, metrics
from predictor.canary import CanarySplit
from predictor.config import Settings
from predictor.errors import ServiceError
from predictor.follower import ChallengerFollower, ModelFollower
from predictor.inference import InferenceService
from predictor.ledger.store import create_ledger_engine
from predictor.ledger.writer import LedgerWriter
from predictor.middleware import RequestContextMiddleware
from predictor.model import MlflowModelLoader
from predictor.openapi import install_openapi
from predictor.samples import SampleBuffer
from predictor.shadow import CircuitBreaker, ShadowScorer

log = logging.getLogger(__name__)

LEDGER_FLUSH_SECONDS = 5.0  # at shutdown, after the in-flight requests drained

DESCRIPTION = """Serves the MLflow model that a registry alias points to, over the KServe V1 protocol.

The request schema below is built from the served model's MLflow signature."""


def create_app(settings: Settings) -> FastAPI:
    loader = MlflowModelLoader(
        settings.mlflow_tracking_uri, extra_fields=settings.extra_fields, compile=settings.compiled_model
    )
    follower = ModelFollower(
        loader,
        name=settings.model_name,
        alias=settings.model_alias,
        poll_interval=settings.poll_interval_seconds,
        retry_max_seconds=settings.load_retry_max_seconds,
    )
    canary, shadow, challengers = _challengers(settings, follower)
    samples = SampleBuffer(settings.sample_buffer_size)
    metrics.SAMPLES_BUFFERED.set_function(samples.__len__)
    ledger = _ledger_writer(settings)
    service = InferenceService(
        follower,
        samples,
        microbatch_max_rows=settings.microbatch_max_rows,
        inference_threads=settings.inference_threads,
        prediction_buckets=settings.prediction_buckets,
        ledger=ledger,
        ledger_sample_rate=settings.ledger_sample_rate,
        canary=canary,
        shadow=shadow,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        if ledger is not None:
            ledger.start()
        following = [
            asyncio.create_task(f.run(), name=f"{f.alias}-follower") for f in (follower, *challengers)
        ]
        yield
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)
        await service.stop()
        if ledger is not None:  # after the batcher: the last batches' rows are queued by now
            await asyncio.to_thread(ledger.stop, LEDGER_FLUSH_SECONDS)

    app = FastAPI(title="predictor", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.ledger = ledger
    app.add_middleware(RequestContextMiddleware)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(api.public)
    app.include_router(api.protected, dependencies=[Depends(api.require_token)] if settings.token else [])
    app.add_route("/metrics", _metrics, include_in_schema=False)
    install_openapi(app, service, max_rows=settings.max_batch_size)
    return app


def _challengers(
    settings: Settings, champion: ModelFollower
) -> tuple[CanarySplit | None, ShadowScorer | None, list[ChallengerFollower]]:
    """The canary split and the shadow scorer the settings ask for, and their followers: one per alias,
    so a version that is both shadow and canary is loaded once."""
    followers: dict[str, ChallengerFollower] = {}

    def follower(alias: str) -> ChallengerFollower:
        roles = [
            role
            for role, a in (("shadow", settings.shadow_alias), ("canary", settings.canary_alias))
            if a == alias
        ]
        if alias not in followers:
            followers[alias] = ChallengerFollower(
                MlflowModelLoader(  # its own folder
                    settings.mlflow_tracking_uri,
                    extra_fields=settings.extra_fields,
                    compile=settings.compiled_model,
                ),
                name=settings.model_name,
                alias=alias,
                role="+".join(roles),
                champion_schema=lambda: champion.current.schema if champion.current else None,
                poll_interval=settings.poll_interval_seconds,
            )
        return followers[alias]

    canary = shadow = None
    if settings.canary_alias is not None:
        canary = CanarySplit(follower(settings.canary_alias), settings.canary_percent)
    if settings.shadow_alias is not None:
        shadow = ShadowScorer(
            follower(settings.shadow_alias),
            queue_batches=settings.shadow_queue_batches,
            breaker=CircuitBreaker(settings.shadow_breaker_failures, settings.shadow_breaker_seconds),
            thread_initializer=lambda: threadpool_limits(limits=settings.inference_threads),
            max_rows=settings.microbatch_max_rows,
        )
    return canary, shadow, list(followers.values())


def _ledger_writer(settings: Settings) -> LedgerWriter | None:
    if settings.ledger_url is None:
        return None
    return LedgerWriter(
        create_ledger_engine(settings.ledger_url),
        queue_rows=settings.ledger_queue_rows,
        retention=timedelta(days=settings.ledger_retention_days),
        max_rows=settings.ledger_max_rows,
    )


async def _metrics(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _error_body(message: str, detail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": message} if detail is None else {"error": message, "detail": detail}


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse(_error_body(str(exc), exc.detail), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    message = "invalid input: " + "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
    return JSONResponse(_error_body(message, detail), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(_error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(_error_body("internal server error"), status_code=500)
