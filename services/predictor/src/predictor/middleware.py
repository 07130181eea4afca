"""Per-request plumbing as plain ASGI (no BaseHTTPMiddleware overhead): request id, HTTP metrics, access log."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from predictor import metrics
from predictor.logging import request_id_var

log = logging.getLogger("predictor.access")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes log at DEBUG
UNMATCHED_ROUTE = "<unmatched>"


class RequestContextMiddleware:
    """Takes the client's X-Request-ID (or makes one), echoes it, and records each request once."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        context = request_id_var.set(request_id)
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            with metrics.HTTP_IN_FLIGHT.track_inprogress():
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path_format", UNMATCHED_ROUTE)  # `{name}`, without convertors
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(template, method, str(status)).inc()
            metrics.HTTP_DURATION.labels(template, method).observe(elapsed)
            log.log(
                logging.DEBUG if template in _QUIET_ROUTES else logging.INFO,
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(context)


def _request_id(scope: dict[str, Any]) -> str:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex
