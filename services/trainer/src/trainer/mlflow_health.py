"""Wait for the MLflow server before the first real call, so "unreachable" is one clear error."""

from __future__ import annotations

import logging
import time

import httpx

from trainer.errors import MlflowUnavailable

log = logging.getLogger(__name__)


def wait_for_mlflow(tracking_uri: str, timeout: float) -> None:
    """Retry with backoff until the server answers /health (in a cluster the Job may start first)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return  # file: or sqlite: stores need no server
    deadline = time.monotonic() + timeout
    delay, last_error = 1.0, ""
    while True:
        try:
            r = httpx.get(tracking_uri.rstrip("/") + "/health", timeout=5)
            if r.status_code == 200:
                return
            last_error = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last_error = str(exc) or type(exc).__name__
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MlflowUnavailable(
                f"MLflow server {tracking_uri} is unreachable after {timeout:.0f}s ({last_error}); "
                "check MLFLOW_TRACKING_URI or start it with `make mlflow`"
            )
        log.info("waiting for MLflow", extra={"tracking_uri": tracking_uri, "error": last_error})
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 10)
