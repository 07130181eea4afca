"""Wait for the MLflow server before the first real call, so "unreachable" is one clear error.

The trainer and the drift monitor hold the same copy of this module (separate images, no shared
package); keep them identical.
"""

from __future__ import annotations

import logging
import time

import httpx

from trainer.errors import MlflowUnavailable

log = logging.getLogger(__name__)


def wait_for_mlflow(tracking_uri: str, timeout: float) -> None:
    """Retry `GET /health` with backoff for up to `timeout` seconds; file: and sqlite: stores need no server.

    In a cluster the Job or CronJob may start before MLflow answers.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    deadline = time.monotonic() + timeout
    delay, last_error = 1.0, ""
    while True:
        try:
            response = httpx.get(tracking_uri.rstrip("/") + "/health", timeout=5)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = str(exc) or type(exc).__name__
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MlflowUnavailable(
                f"MLflow server {tracking_uri} is unreachable after {timeout:.0f}s ({last_error}); "
                "check MLFLOW_TRACKING_URI"
            )
        log.info("waiting for MLflow", extra={"tracking_uri": tracking_uri, "error": last_error})
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 10)
