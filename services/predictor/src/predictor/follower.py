"""Follow the registry alias: load the version it points to at start-up, then poll and hot-swap.

Loading happens off the request path (in a thread). A new version replaces the served one in a single
reference assignment, so concurrent requests never see a half-loaded model; a request already running
finishes on the version it started with. A version that fails to load, fails its smoke test, or expects
different inputs is not served: the old one stays, and the failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from predictor import metrics
from predictor.errors import MlflowUnavailable, ModelLoadError
from predictor.logging import set_served_model
from predictor.model import LoadedModel, MlflowModelLoader, VersionRef

log = logging.getLogger(__name__)

# A version that failed to load is retried after poll × 2^failures, at most this often apart: less load
# on MLflow than a download every poll, and still ≥ 3 failures in 15 minutes, so ModelReloadFailing
# keeps firing for as long as the alias points at a broken version.
MAX_RETRY_SECONDS = 240


class ModelFollower:
    """Keeps the served model equal to what the registry alias points to, without a restart.

    Loads at start-up with retry, then polls; `current` is the version requests use (None until loaded).
    """

    def __init__(
        self,
        loader: MlflowModelLoader,
        *,
        name: str,
        alias: str,
        poll_interval: float,
        retry_max_seconds: float = 30,
    ):
        self.loader = loader
        self.name = name
        self.alias = alias
        self.poll_interval = poll_interval
        self.retry_max_seconds = retry_max_seconds
        self.current: LoadedModel | None = None
        # Both outcomes exist from the start at 0, so `increase(...)` over them is 0, not "no data".
        for outcome in ("success", "failure"):
            metrics.MODEL_RELOADS.labels(name, outcome)
        self._failed: dict[str, tuple[int, float]] = {}  # version -> (failures, monotonic time of next try)
        metrics.MODEL_LOADED.labels(name).set(0)

    async def run(self) -> None:
        """Load at start-up (retrying with backoff until it works), then poll forever."""
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.5, max=self.retry_max_seconds),
            before_sleep=self._log_retry,
        )
        async for attempt in retrying:
            with attempt:
                await self.check()
                if self.current is None:
                    raise ModelLoadError(f"{self.name}@{self.alias} could not be loaded")
        assert self.current is not None  # the retries above end only once a version is served
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.check()
            except Exception as exc:
                log.warning(
                    "alias check failed; still serving version %s",
                    self.current.version,
                    extra={"error": str(exc)},
                    exc_info=not isinstance(exc, MlflowUnavailable),  # an outage needs no traceback
                )

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        extra = {"attempt": state.attempt_number, "error": str(error)}
        if isinstance(error, MlflowUnavailable):  # the trainer and the drift monitor log the same line
            log.warning("waiting for MLflow", extra={**extra, "tracking_uri": self.loader.tracking_uri})
        else:
            log.warning("no model to serve yet; retrying", extra=extra)

    async def check(self) -> None:
        """Serve the version the alias points to, if it is new and loads; raises when the alias cannot be read."""
        ref = await asyncio.to_thread(self.loader.resolve, self.name, self.alias)
        if self.current is not None and ref.version == self.current.version:
            return
        failures, next_try = self._failed.get(ref.version, (0, 0.0))
        if self.current is not None and time.monotonic() < next_try:
            return  # a version that failed recently: wait out its backoff
        model = await self._load(ref)
        if model is None:
            delay = min(self.poll_interval * 2**failures, max(MAX_RETRY_SECONDS, self.poll_interval))
            self._failed[ref.version] = (failures + 1, time.monotonic() + delay)
            return
        self._failed.pop(ref.version, None)
        self._swap(model)

    async def _load(self, ref: VersionRef) -> LoadedModel | None:
        try:
            model = await asyncio.to_thread(self.loader.load, ref)
            if self.current is not None and model.schema != self.current.schema:
                self.loader.discard(model)
                raise ModelLoadError(
                    f"version {ref.version} expects different inputs than version {self.current.version}; "
                    "a schema change needs a new rollout"
                )
        except Exception as exc:
            metrics.MODEL_RELOADS.labels(self.name, "failure").inc()
            served = self.current.version if self.current else None
            log.error(
                "version %s of %s not loaded (%s); still serving version %s",
                ref.version,
                self.name,
                exc,
                served,
                extra={"candidate_version": ref.version, "served_version": served, "error": str(exc)},
                exc_info=not isinstance(exc, ModelLoadError),
            )
            return None
        metrics.MODEL_RELOADS.labels(self.name, "success").inc()
        return model

    def _swap(self, model: LoadedModel) -> None:
        old, self.current = self.current, model
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(model.name, model.ref.alias, model.version, model.ref.run_id or "").set(1)
        metrics.MODEL_LOADED.labels(model.name).set(1)
        set_served_model(model.name, model.version)
        log.info(
            "serving model version",
            extra={"served_version": model.version, "previous_version": old.version if old else None},
        )
        if old is not None:
            self.loader.discard(old)
