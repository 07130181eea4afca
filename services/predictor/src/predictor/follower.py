"""Follow the registry alias: load the version it points to at start-up, then poll and hot-swap.

Loading happens off the request path (in a thread). A new version replaces the served one in a single
reference assignment, so concurrent requests never see a half-loaded model; a request already running
finishes on the version it started with. A version that fails to load, fails its smoke test, or expects
different inputs is not served: the old one stays, and the failure is logged and counted.

The champion's follower decides readiness. A challenger's follower (`ChallengerFollower`: the shadow or the
canary alias) never does: until its alias exists and loads, the champion serves alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from mlflow.exceptions import MlflowException
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from predictor import heap, metrics
from predictor.errors import MlflowUnavailable, ModelLoadError
from predictor.logging import set_served_model
from predictor.model import LoadedModel, MlflowModelLoader, VersionRef
from predictor.schema import InputSchema

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
        self._failed: dict[str, tuple[int, float]] = {}  # version -> (failures, monotonic time of next try)
        self._export_initial_metrics()

    def _export_initial_metrics(self) -> None:
        # Both outcomes exist from the start at 0, so `increase(...)` over them is 0, not "no data".
        for outcome in ("success", "failure"):
            metrics.MODEL_RELOADS.labels(self.name, outcome)
        metrics.MODEL_LOADED.labels(self.name).set(0)

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
        await self._follow(ref)

    async def _follow(self, ref: VersionRef) -> None:
        failures, next_try = self._failed.get(ref.version, (0, 0.0))
        if self._backing_off(next_try):
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
            self._check_inputs(model)
        except Exception as exc:
            self._count_reload("failure")
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
        self._count_reload("success")
        return model

    def _backing_off(self, next_try: float) -> bool:
        # Before the first version is served, start-up's own retry loop sets the pace.
        return self.current is not None and time.monotonic() < next_try

    def _check_inputs(self, model: LoadedModel) -> None:
        if self.current is not None and model.schema != self.current.schema:
            self.loader.discard(model)
            raise ModelLoadError(
                f"version {model.version} expects different inputs than version {self.current.version}; "
                "a schema change needs a new rollout"
            )

    def _count_reload(self, outcome: str) -> None:
        metrics.MODEL_RELOADS.labels(self.name, outcome).inc()

    def _swap(self, model: LoadedModel | None) -> None:
        old, self.current = self.current, model
        if old is not None:  # only this alias's series: a challenger's stay
            with suppress(KeyError):
                metrics.MODEL_INFO.remove(old.name, old.ref.alias, old.version, old.ref.run_id or "")
        if model is not None:
            metrics.MODEL_INFO.labels(model.name, model.ref.alias, model.version, model.ref.run_id or "").set(
                1
            )
        self._announce(model)
        log.info(
            "serving model version" if model else "no longer serving a version",
            extra={
                "model_alias": self.alias,
                "served_version": model.version if model else None,
                "previous_version": old.version if old else None,
            },
        )
        if old is not None:
            self.loader.discard(old)
        del old  # so the replaced version is collected by the settle, not frozen with the rest
        heap.settle()

    def _announce(self, model: LoadedModel | None) -> None:
        if model is not None:
            metrics.MODEL_LOADED.labels(model.name).set(1)
            set_served_model(model.name, model.version)


class ChallengerFollower(ModelFollower):
    """Follows a shadow or canary alias beside the champion; its failures never touch readiness.

    The alias may not exist yet (no challenger trained) or be deleted (it won and became champion): then
    nothing is served under it. Its version must take the same inputs as the champion, because requests
    are validated against the champion's schema before either model sees them.
    """

    def __init__(
        self,
        loader: MlflowModelLoader,
        *,
        name: str,
        alias: str,
        role: str,
        champion_schema: Callable[[], InputSchema | None],
        poll_interval: float,
    ):
        self.role = role
        self._champion_schema = champion_schema
        super().__init__(loader, name=name, alias=alias, poll_interval=poll_interval)

    def _export_initial_metrics(self) -> None:
        metrics.CHALLENGER_LOADED.labels(self.name, self.alias, self.role).set(0)
        for outcome in ("success", "failure"):
            metrics.CHALLENGER_RELOADS.labels(self.name, self.alias, self.role, outcome)

    async def run(self) -> None:
        """Poll forever; nothing to wait for at start-up."""
        while True:
            try:
                await self.check()
            except Exception as exc:
                log.warning(
                    "%s alias check failed", self.role, extra={"model_alias": self.alias, "error": str(exc)}
                )
            await asyncio.sleep(self.poll_interval)

    async def check(self) -> None:
        if self._champion_schema() is None:
            return  # its inputs are checked against the champion's: nothing to check against yet
        try:
            ref = await asyncio.to_thread(self.loader.resolve, self.name, self.alias)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST" and "not found" not in str(exc).lower():
                raise
            if self.current is not None:
                self._swap(None)
            return
        if self.current is not None and ref.version == self.current.version:
            return
        await self._follow(ref)

    def _backing_off(self, next_try: float) -> bool:
        return time.monotonic() < next_try  # nothing depends on it: a failed version waits its turn

    def _check_inputs(self, model: LoadedModel) -> None:
        champion = self._champion_schema()
        if champion is not None and model.schema != champion:
            self.loader.discard(model)
            raise ModelLoadError(
                f"{self.role} version {model.version} ({self.alias}) expects different inputs than the champion"
            )

    def _count_reload(self, outcome: str) -> None:
        metrics.CHALLENGER_RELOADS.labels(self.name, self.alias, self.role, outcome).inc()

    def _announce(self, model: LoadedModel | None) -> None:
        metrics.CHALLENGER_LOADED.labels(self.name, self.alias, self.role).set(0 if model is None else 1)
