"""A bounded, in-memory buffer of predicted rows for the drift monitor (nothing is written to disk).

A ring buffer: once full, each new row evicts the oldest, and the evictions are counted. Memory is
bounded by `size` whatever the traffic; a restarted pod starts empty.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    """One predicted row as served, kept for the drift monitor (`GET /v1/samples`)."""

    timestamp: float
    request_id: str
    model_name: str
    model_version: str
    features: dict[str, Any]
    prediction: Any
    shadow_version: str | None = None
    """The shadow alias's version, when it scored this row too (PREDICTOR_SHADOW_ALIAS)."""
    shadow_prediction: Any = None

    def as_dict(self) -> dict[str, Any]:
        served = {
            "timestamp": self.timestamp,
            "request_id": self.request_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "features": self.features,
            "prediction": self.prediction,
        }
        if self.shadow_version is None:
            return served
        return served | {"shadow_version": self.shadow_version, "shadow_prediction": self.shadow_prediction}


class SampleBuffer:
    """The recent predictions the drift monitor reads, in bounded memory: no database on the request path.

    Thread-safe ring buffer in the order rows were recorded. That is not always the order they were
    received (a batch the shadow scores is recorded after a later one it skipped), so `since` filters
    and sorts every sample rather than binary-searching: a few milliseconds for 10,000, once per
    drift-monitor scrape.
    """

    def __init__(self, size: int):
        self.size = size
        self._samples: deque[Sample] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.dropped_total = 0

    def __len__(self) -> int:
        return len(self._samples)

    def extend(self, samples: list[Sample]) -> int:
        """Append samples; returns how many old ones were evicted to make room."""
        with self._lock:
            dropped = max(0, len(self._samples) + len(samples) - self.size)
            self._samples.extend(samples)
            self.dropped_total += dropped
        return dropped

    def since(self, timestamp: float, limit: int) -> list[Sample]:
        """Up to `limit` samples with a timestamp strictly after `timestamp`, oldest first."""
        with self._lock:
            snapshot = list(self._samples)
        newer = sorted((s for s in snapshot if s.timestamp > timestamp), key=lambda s: s.timestamp)
        return newer[:limit]
