"""create_app(...) → the controller's FastAPI app, and `serve()` (`trainer controller`).

Routes: POST /v1/alerts (Alertmanager's webhook), GET /v1/state (the guard rails), /healthz, /readyz,
/metrics. Two background loops: the running run's status every RETRAINING_STATUS_INTERVAL_SECONDS and
the automatic rollback check every RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS.

Answers to Alertmanager, which retries a 5xx and never a 4xx: 401 without the token, 413 for a huge
body, 422 naming the bad field (nothing decided, nothing stored); 200 with every alert's decision,
including `skipped/launch_failed` (a decision like any other: recorded, counted, an Event; a retry
would only repeat it); 503 when the state cannot be read or written (nothing decided: a retry is
right).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, NoReturn

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from trainer.config import Settings
from trainer.controller import metrics
from trainer.controller.config import ControllerSettings
from trainer.controller.decide import runs_in_cap_window
from trainer.controller.rollback_check import check_rollback, rollback_check_enabled
from trainer.controller.service import RetrainService
from trainer.controller.state import GuardState, StateStoreError
from trainer.controller.webhook import Webhook, validation_detail

log = logging.getLogger("trainer.controller")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_BODY_BYTES = 4 * 1024 * 1024


def create_app(
    settings: ControllerSettings, service: RetrainService, trainer_settings: Settings | None = None
) -> FastAPI:
    rollback_on = rollback_check_enabled(trainer_settings, settings.rollback_check_interval_seconds)
    last_rollback_check: dict[str, Any] = {}
    if trainer_settings is not None:
        metrics.watch_model(trainer_settings.model_name)

    async def status_loop() -> None:
        while True:
            try:
                await asyncio.to_thread(service.check_running)
            except StateStoreError as exc:
                log.error("cannot check the running run: %s", exc)
            except Exception as exc:  # never let the loop die: the next interval tries again
                log.error("run status check failed: %s: %s", type(exc).__name__, exc)
                log.debug("traceback", exc_info=True)
            await asyncio.sleep(settings.status_interval_seconds)

    # Its own thread, not the loop's default executor: a check stuck on an unreachable MLflow (its client
    # retries for minutes) must not hold up the shutdown, which waits for the default executor.
    rollback_executor = ThreadPoolExecutor(1, thread_name_prefix="rollback-check")

    async def rollback_loop() -> None:
        assert trainer_settings is not None
        loop = asyncio.get_running_loop()
        while True:
            verdict = await loop.run_in_executor(
                rollback_executor, check_rollback, trainer_settings, service.events
            )
            last_rollback_check.clear()
            last_rollback_check.update(verdict)
            await asyncio.sleep(settings.rollback_check_interval_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "retrain controller started",
            extra={
                "enabled": settings.enabled,
                "dry_run": settings.dry_run,
                "store": service.store.describe(),
                "launcher": service.launcher.describe(),
                "trigger_alerts": settings.trigger_alerts,
                "drift_trigger_enabled": settings.drift_trigger_enabled,
                "rollback_check": rollback_on,
            },
        )
        if not rollback_on:
            log.info(
                "automatic rollback check off (needs TRAINER_LEDGER_DATABASE_URL and "
                "RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS > 0)"
            )
        tasks = [asyncio.create_task(status_loop(), name="run-status")]
        if rollback_on:
            tasks.append(asyncio.create_task(rollback_loop(), name="rollback-check"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rollback_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="retrain controller", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

    def authorised(request: Request) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), settings.token.encode()
        )

    @app.post("/v1/alerts")
    async def alerts(request: Request) -> JSONResponse:
        if not authorised(request):
            return _refuse(request, 401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        body = await _read_body(request)
        if body is None:
            return _refuse(request, 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            webhook = Webhook.model_validate_json(body)
        except ValidationError as exc:
            detail = validation_detail(exc)
            message = "invalid webhook: " + "; ".join(f"{d['loc']}: {d['msg']}" for d in detail)
            return _refuse(request, 422, message, detail=detail)
        try:
            decisions = await asyncio.to_thread(service.handle, webhook)
        except StateStoreError as exc:
            log.error("webhook not decided: %s", exc)
            return _error(503, f"retraining state unavailable, nothing decided: {exc}", {"Retry-After": "10"})
        return JSONResponse({"decisions": [d.as_dict() for d in decisions]})

    @app.get("/v1/state")
    async def state(request: Request) -> JSONResponse:
        if not authorised(request):
            return _refuse(request, 401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            current = await asyncio.to_thread(service.state)
        except StateStoreError as exc:
            return _error(503, f"retraining state unavailable: {exc}")
        body = current.model_dump(mode="json")
        body["guard_rails"] = _guard_rails(settings, current, service)
        body["rollback_check"] = dict(last_rollback_check) or None
        return JSONResponse(body)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready once the state store answers (the ConfigMap exists, the file is valid)."""
        try:
            await asyncio.to_thread(service.state)
        except StateStoreError as exc:
            return _error(503, f"retraining state unavailable: {exc}")
        return JSONResponse({"ready": True, "store": service.store.describe()})

    app.add_route("/metrics", _metrics, include_in_schema=False)
    return app


def _guard_rails(settings: ControllerSettings, state: GuardState, service: RetrainService) -> dict[str, Any]:
    now = service.clock()
    started = runs_in_cap_window(state, now)
    cooldown_until = (
        state.last_finished_at + timedelta(seconds=settings.cooldown_seconds)
        if state.last_finished_at
        else None
    )
    return {
        "now": now.isoformat(),
        "enabled": settings.enabled,
        "dry_run": settings.dry_run,
        "cooldown_seconds": settings.cooldown_seconds,
        "cooldown_until": cooldown_until.isoformat() if cooldown_until and cooldown_until > now else None,
        "daily_cap": settings.daily_cap,
        "runs_in_last_24h": len(started),
        "trigger_alerts": settings.trigger_alerts,
        "drift_trigger_enabled": settings.drift_trigger_enabled,
        "drift_alerts": settings.drift_alerts,
        "drift_min_age_seconds": settings.drift_min_age_seconds,
        "store": service.store.describe(),
        "launcher": service.launcher.describe(),
    }


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it exceeds MAX_BODY_BYTES (not buffered further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    detail: list[dict[str, object]] | None = None,
) -> JSONResponse:
    """A 4xx: nothing decided. Logged, so a misconfigured Alertmanager (wrong token) shows up."""
    client = request.client.host if request.client else "?"
    log.warning("webhook refused: %s %s", status, message, extra={"status": status, "client": client})
    return _error(status, message, headers, detail)


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    detail: list[dict[str, object]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


async def _metrics(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, str(exc.detail), dict(exc.headers) if exc.headers else None)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error: %s: %s", type(exc).__name__, exc)
    log.debug("traceback", exc_info=exc)
    return _error(500, "internal server error")


# ------------------------------------------------------------------------------ serve
def serve() -> int:
    """`trainer controller`: settings (exit 2 when invalid), logging, uvicorn until SIGTERM (exit 0);
    exit 1 when it cannot start (no cluster for the kubernetes launcher, the port taken)."""
    import uvicorn

    from trainer.config import describe_settings_error as describe_trainer_error
    from trainer.controller.config import describe_settings_error
    from trainer.controller.kube import KubernetesUnavailable
    from trainer.controller.service import build_service
    from trainer.logging import configure_logging

    try:
        settings = ControllerSettings()  # the token comes from the environment
    except ValidationError as exc:  # before logging is set up: its level and format are settings too
        sys.stderr.write(f"trainer: invalid settings: {describe_settings_error(exc)}\n")
        return EXIT_USAGE
    try:
        trainer_settings = Settings()  # the rollback check's (and the runs' own) TRAINER_* settings
    except ValidationError as exc:
        sys.stderr.write(f"trainer: invalid settings: {describe_trainer_error(exc)}\n")
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        service = build_service(settings)
    except KubernetesUnavailable as exc:
        log.error("retrain controller cannot start: %s", exc)
        return EXIT_FAILED
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler that was there before it
    # started: with the default one the process would die "terminated by SIGTERM" (143). A drained
    # shutdown is a clean exit. Local runs live in their own sessions and carry on.
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        uvicorn.run(
            create_app(settings, service, trainer_settings),
            host=settings.host,
            port=settings.port,
            log_config=None,  # ours, set up above: uvicorn's records propagate to it
            access_log=False,
        )
    except SystemExit as exc:  # uvicorn logs why it cannot start (e.g. the port is taken), then exits
        if exc.code:
            return EXIT_FAILED
        raise
    return EXIT_OK


def _exit_after_drain(signum: int, frame: object) -> NoReturn:
    logging.shutdown()
    os._exit(EXIT_OK)
