"""Shadow scoring: a challenger version predicts the same micro-batches as the champion, off the response path.

The champion's answer has already gone back to the client when a batch gets here; the shadow's prediction is
only recorded beside it (samples, ledger, disagreement metrics). A bounded queue and one worker thread keep
a slow shadow from growing memory; a circuit breaker keeps a failing one from burning the CPU the champion
needs. Every batch offered is recorded exactly once, with or without the shadow's prediction: the ledger never
loses a served row because of the shadow.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predictor import metrics
from predictor.follower import ChallengerFollower
from predictor.model import LoadedModel

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True, slots=True)
class ShadowPredictions:
    """The shadow's prediction of each row of a batch the champion (or the canary) answered."""

    version: str
    values: list[Any]


@dataclass(frozen=True, slots=True)
class ServedBatch:
    """One micro-batch as served: the model that answered, its input frame and its predictions (flat)."""

    model: LoadedModel
    frame: pd.DataFrame
    predictions: list[Any]
    record: Callable[[ShadowPredictions | None], None]
    """Records the batch (samples, ledger, metrics); called exactly once, with or without the shadow's values."""


class CircuitBreaker:
    """Open after `failures` consecutive failures, for `seconds`; after that one more failure reopens it."""

    def __init__(self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.seconds = seconds
        self._clock = clock
        self._consecutive = 0
        self._open_until = 0.0
        metrics.SHADOW_BREAKER_OPEN.set_function(lambda: 1 if self.open else 0)

    @property
    def open(self) -> bool:
        return self._clock() < self._open_until

    def reset(self) -> None:
        """A new shadow version starts with a clean record."""
        self._consecutive = 0
        self._open_until = 0.0

    def succeeded(self) -> None:
        self._consecutive = 0

    def failed(self) -> None:
        self._consecutive += 1
        if self._consecutive >= self.failures:
            self._open_until = self._clock() + self.seconds
            self._consecutive = self.failures - 1  # after the pause, one more failure reopens it
            log.warning(
                "shadow scoring paused after %d failures in a row",
                self.failures,
                extra={"seconds": self.seconds},
            )


class ShadowScorer:
    """One thread that scores served batches with the shadow alias's version and records both predictions."""

    def __init__(
        self,
        follower: ChallengerFollower,
        *,
        queue_batches: int,
        breaker: CircuitBreaker,
        thread_initializer: Callable[[], object] | None = None,
    ):
        self.follower = follower
        self.breaker = breaker
        self.queue_batches = queue_batches
        self._thread_initializer = thread_initializer
        # Unbounded as a Queue so that the stop marker never blocks; `offer` enforces the bound.
        self._queue: queue.Queue[ServedBatch | object] = queue.Queue()
        self._deadline = math.inf  # past it (shutting down), batches are recorded without scoring
        self._last_version: str | None = None
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Score what is queued for up to `timeout`, record the rest without a shadow prediction, then return.

        Returns only once every batch offered has been recorded, so the ledger that stops next has them all.
        """
        self._deadline = time.monotonic() + timeout
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join()  # past the deadline the thread only records: at most one model call remains
        self._record_left()  # never started, or died: nothing offered may go unrecorded

    def offer(self, batch: ServedBatch) -> None:
        """Queue a served batch for shadow scoring; never blocks. With no room it is recorded without one."""
        shadow = self.follower.current
        if shadow is None or shadow.version == batch.model.version:
            _record(
                batch, None
            )  # nothing to compare with: no challenger loaded, or it is the version that answered
            return
        if self.breaker.open:
            _record(batch, self._skip(batch, "breaker_open"))
            return
        if self._queue.qsize() >= self.queue_batches or not self._thread.is_alive():
            _record(batch, self._skip(batch, "queue_full"))
            return
        self._queue.put(batch)

    def _run(self) -> None:
        if self._thread_initializer is not None:
            self._thread_initializer()  # the same OpenMP/BLAS limit as the champion's inference thread
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, ServedBatch)
            try:
                shadow = (
                    self._score(item) if time.monotonic() < self._deadline else self._skip(item, "shutdown")
                )
            except Exception:  # a bug here must not stop the recording of served rows
                log.exception("shadow scoring failed unexpectedly")
                shadow = None
            _record(item, shadow)

    def _record_left(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, ServedBatch):
                _record(item, self._skip(item, "shutdown"))

    def _skip(self, batch: ServedBatch, reason: str) -> ShadowPredictions | None:
        """Count the batch's rows as not shadow-scored; None, to record it without shadow predictions."""
        metrics.SHADOW_DROPPED.labels(reason).inc(len(batch.predictions))
        return None

    def _score(self, batch: ServedBatch) -> ShadowPredictions | None:
        shadow = self.follower.current
        if shadow is None or shadow.version == batch.model.version:
            return None
        if shadow.version != self._last_version:
            self._last_version = shadow.version
            self.breaker.reset()
        started = time.perf_counter()
        try:
            values = shadow.predict(batch.frame).tolist()
        except Exception as exc:
            self.breaker.failed()
            metrics.SHADOW_DROPPED.labels("failed").inc(len(batch.predictions))
            log.warning(
                "the shadow version failed on a served batch",
                extra={"shadow_version": shadow.version, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None
        self.breaker.succeeded()
        metrics.SHADOW_LATENCY.labels(shadow.name, shadow.version).observe(time.perf_counter() - started)
        metrics.SHADOW_PREDICTIONS.labels(shadow.name, shadow.version).inc(len(values))
        _observe_disagreement(batch, shadow.version, values)
        return ShadowPredictions(shadow.version, values)


def _record(batch: ServedBatch, shadow: ShadowPredictions | None) -> None:
    try:
        batch.record(shadow)
    except Exception:
        log.exception("recording a served batch failed")


def _observe_disagreement(batch: ServedBatch, shadow_version: str, values: list[Any]) -> None:
    try:
        served = np.asarray(batch.predictions, dtype=float)
        shadow = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return  # non-numeric outputs: no distance to measure
    if served.shape != shadow.shape:
        return
    absolute = np.abs(shadow - served).ravel()
    relative = absolute / np.maximum(np.abs(served).ravel(), 1e-12)
    labels = (batch.model.name, batch.model.version, shadow_version)
    absolute_histogram = metrics.SHADOW_ABSOLUTE_DIFFERENCE.labels(*labels)
    relative_histogram = metrics.SHADOW_RELATIVE_DIFFERENCE.labels(*labels)
    for a, r in zip(absolute.tolist(), relative.tolist(), strict=True):
        absolute_histogram.observe(a)
        relative_histogram.observe(r)
