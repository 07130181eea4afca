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
    """One micro-batch as served: the model that answered, its validated rows and its predictions (flat)."""

    model: LoadedModel
    rows: list[dict[str, Any]]
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
        max_rows: int = 2000,
        linger_seconds: float = 0.05,
    ):
        self.follower = follower
        self.breaker = breaker
        self.queue_batches = queue_batches
        self.max_rows = max_rows
        self.linger_seconds = linger_seconds
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
        stopping = False
        while not stopping:
            batches, stopping = self._take()
            for group in _by_served_model(batches):
                values: list[ShadowPredictions | None] | None = None
                if time.monotonic() >= self._deadline:
                    self._skip_all(group, "shutdown")
                else:
                    try:
                        values = self._score(group)
                    except Exception:  # a bug here must not stop the recording of served rows
                        log.exception("shadow scoring failed unexpectedly")
                for batch, shadow in zip(group, values or [None] * len(group), strict=True):
                    _record(batch, shadow)

    def _take(self) -> tuple[list[ServedBatch], bool]:
        """The next batches to score together, and whether the stop marker came: everything queued now,
        plus what arrives within `linger_seconds`, up to `max_rows` rows. One model call then pays the
        per-call cost (most of a tree pipeline's time on small batches) for many served batches."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        assert isinstance(first, ServedBatch)
        batches, rows = [first], len(first.predictions)
        linger_until = time.monotonic() + (self.linger_seconds if self._deadline == math.inf else 0)
        while rows < self.max_rows:
            wait = linger_until - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batches, True
            assert isinstance(item, ServedBatch)
            batches.append(item)
            rows += len(item.predictions)
        return batches, False

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

    def _skip_all(self, batches: list[ServedBatch], reason: str) -> None:
        for batch in batches:
            self._skip(batch, reason)

    def _score(self, batches: list[ServedBatch]) -> list[ShadowPredictions | None] | None:
        """The shadow's predictions for batches one model answered, in one call; None when not scored."""
        shadow = self.follower.current
        if shadow is None or shadow.version == batches[0].model.version:
            return None
        if shadow.version != self._last_version:
            self._last_version = shadow.version
            self.breaker.reset()
        rows = [row for batch in batches for row in batch.rows]
        started = time.perf_counter()
        try:
            values = shadow.predict_rows(rows).tolist()
        except Exception as exc:
            self.breaker.failed()
            self._skip_all(batches, "failed")
            log.warning(
                "the shadow version failed on served batches",
                extra={"shadow_version": shadow.version, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None
        self.breaker.succeeded()
        metrics.SHADOW_LATENCY.labels(shadow.name, shadow.version).observe(time.perf_counter() - started)
        metrics.SHADOW_PREDICTIONS.labels(shadow.name, shadow.version).inc(len(values))
        per_batch: list[ShadowPredictions | None] = []
        end = 0
        for batch in batches:
            start, end = end, end + len(batch.predictions)
            per_batch.append(ShadowPredictions(shadow.version, values[start:end]))
            _observe_disagreement(batch, shadow.version, values[start:end])
        return per_batch


def _by_served_model(batches: list[ServedBatch]) -> list[list[ServedBatch]]:
    groups: dict[int, list[ServedBatch]] = {}
    for batch in batches:
        groups.setdefault(id(batch.model), []).append(batch)
    return list(groups.values())


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
