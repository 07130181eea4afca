"""Shadow scoring: a challenger version predicts the same micro-batches as the champion, off the response path.

The champion's answer has already gone back to the client when a batch gets here; the shadow's prediction is
only recorded beside it (samples, ledger, disagreement metrics). A bounded queue and one worker thread keep
a slow shadow from growing memory; a circuit breaker keeps a failing one from burning the CPU the champion
needs. Every batch offered is recorded exactly once, with or without the shadow's prediction: the ledger never
loses a served row because of the shadow.
"""

from __future__ import annotations

import logging
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
    """Records the batch (samples, ledger, metrics); called exactly once, from the shadow's thread."""


class CircuitBreaker:
    """Open after `failures` consecutive failures, for `seconds`; then one trial batch decides."""

    def __init__(self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.seconds = seconds
        self._clock = clock
        self._consecutive = 0
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return self._clock() < self._open_until

    def succeeded(self) -> None:
        self._consecutive = 0
        metrics.SHADOW_BREAKER_OPEN.set(0)

    def failed(self) -> None:
        self._consecutive += 1
        if self._consecutive >= self.failures:
            self._open_until = self._clock() + self.seconds
            self._consecutive = self.failures - 1  # after the pause, one more failure reopens it
            metrics.SHADOW_BREAKER_OPEN.set(1)
            log.warning(
                "shadow scoring paused after %d failures in a row",
                self.failures,
                extra={"seconds": self.seconds},
            )


class ShadowScorer:
    """One thread that scores served batches with the shadow alias's version and records both predictions."""

    def __init__(self, follower: ChallengerFollower, *, queue_batches: int, breaker: CircuitBreaker):
        self.follower = follower
        self.breaker = breaker
        self._queue: queue.Queue[ServedBatch | object] = queue.Queue(maxsize=queue_batches)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Score what is queued (within `timeout`), then record whatever is left without a shadow prediction."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        while True:  # the thread did not finish in time: nothing offered may go unrecorded
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, ServedBatch):
                metrics.SHADOW_DROPPED.labels("shutdown").inc(len(item.predictions))
                item.record(None)

    def offer(self, batch: ServedBatch) -> None:
        """Queue a served batch for shadow scoring; never blocks. With no room it is recorded without one."""
        shadow = self.follower.current
        if shadow is None or shadow.version == batch.model.version:
            batch.record(
                None
            )  # nothing to compare with: no challenger loaded, or it is the version that answered
            return
        if self.breaker.open:
            metrics.SHADOW_DROPPED.labels("breaker_open").inc(len(batch.predictions))
            batch.record(None)
            return
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            metrics.SHADOW_DROPPED.labels("queue_full").inc(len(batch.predictions))
            batch.record(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, ServedBatch)
            item.record(self._score(item))

    def _score(self, batch: ServedBatch) -> ShadowPredictions | None:
        shadow = self.follower.current
        if shadow is None or shadow.version == batch.model.version:
            return None
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
