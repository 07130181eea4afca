"""Predictions: the served model, micro-batched calls, and what each prediction leaves behind
(samples for the drift monitor, the ledger, metrics). No web framework here.

Beside the champion, two optional challengers: a canary that answers a sticky share of users
(canary.py), and a shadow that scores what was served without ever answering (shadow.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from threadpoolctl import threadpool_limits

from predictor import metrics
from predictor.batching import MicroBatcher
from predictor.canary import CanarySplit
from predictor.errors import ModelNotFound, ModelNotReady, PredictionFailed
from predictor.follower import ModelFollower
from predictor.ledger import prediction_id
from predictor.ledger.sampling import is_sampled
from predictor.ledger.writer import LedgerWriter
from predictor.model import LoadedModel
from predictor.samples import Sample, SampleBuffer
from predictor.shadow import ServedBatch, ShadowPredictions, ShadowScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    model: LoadedModel
    rows: list[dict[str, Any]]
    request_id: str
    received_at: float


class InferenceService:
    """The predict path between the routes and the model: validate, micro-batch, predict, record samples and metrics.

    Routes stay thin and the model stays free of HTTP; this is the one place that knows both.
    """

    def __init__(
        self,
        follower: ModelFollower,
        samples: SampleBuffer,
        *,
        microbatch_max_rows: int,
        inference_threads: int,
        prediction_buckets: list[float],
        ledger: LedgerWriter | None = None,
        ledger_sample_rate: float = 1.0,
        canary: CanarySplit | None = None,
        shadow: ShadowScorer | None = None,
    ):
        self.follower = follower
        self.samples = samples
        self.canary = canary
        self.shadow = shadow
        self.ledger = ledger
        self.ledger_sample_rate = ledger_sample_rate
        self._prediction_value = metrics.prediction_value(prediction_buckets)
        self._batcher: MicroBatcher[_Job, list[Any]] = MicroBatcher(
            self._predict_batch,
            max_rows=microbatch_max_rows,
            thread_initializer=lambda: threadpool_limits(limits=inference_threads),
        )

    def start(self) -> None:
        self._batcher.start()
        if self.shadow is not None:
            self.shadow.start()

    async def stop(self) -> None:
        await self._batcher.stop()
        if self.shadow is not None:  # after the batcher: its last batches are queued for the shadow by now
            await asyncio.to_thread(self.shadow.stop)

    def check_served(self, name: str) -> None:
        """404 unless this predictor serves the model `name` (loaded or not)."""
        if name != self.follower.name:
            raise ModelNotFound(
                f"model {name!r} is not served here; this predictor serves {self.follower.name!r}"
            )

    def model(self, name: str) -> LoadedModel:
        """The served model under this name; 404 for another name, 503 until one is loaded."""
        self.check_served(name)
        model = self.follower.current
        if model is None:
            raise ModelNotReady(
                f"model {name!r} ({self.follower.name}@{self.follower.alias}) is not loaded yet"
            )
        return model

    def challengers(self) -> list[dict[str, Any]]:
        """The shadow and canary aliases and what they serve now (model metadata)."""
        described = []
        if self.shadow is not None:
            described.append(_describe(self.shadow.follower, "shadow"))
        if self.canary is not None:
            described.append(_describe(self.canary.follower, "canary") | {"percent": self.canary.percent})
        return described

    def route(self, champion: LoadedModel, routing_key: str) -> LoadedModel:
        """The version that answers this request: the canary's for its share of routing keys, else the champion."""
        model = champion if self.canary is None else self.canary.choose(champion, routing_key)
        metrics.ROUTED_REQUESTS.labels(model.name, model.ref.alias).inc()
        return model

    async def predict(self, model: LoadedModel, rows: list[dict[str, Any]], request_id: str) -> list[Any]:
        """One prediction per validated row, computed together with concurrent requests."""
        return await self._batcher.submit(_Job(model, rows, request_id, time.time()), len(rows))

    # ---- in the inference thread

    def _predict_batch(self, jobs: Sequence[_Job]) -> list[list[Any] | Exception]:
        # One model call per version (champion, canary, or the version before a swap), in any interleaving.
        positions: dict[int, list[int]] = {}
        for position, job in enumerate(jobs):
            positions.setdefault(id(job.model), []).append(position)
        results: list[list[Any] | Exception] = [[] for _ in jobs]
        for group in positions.values():
            members = [jobs[position] for position in group]
            for position, result in zip(group, self._predict_group(members[0].model, members), strict=True):
                results[position] = result
        return results

    def _predict_group(self, model: LoadedModel, jobs: list[_Job]) -> list[list[Any] | Exception]:
        try:
            rows = [row for job in jobs for row in job.rows]
            values = model.predict_rows(rows).tolist()
        except Exception:
            if len(jobs) > 1:  # one bad request must not fail its neighbours: retry them one by one
                return [result for job in jobs for result in self._predict_group(model, [job])]
            log.exception("the model failed on validated input", extra={"request_id": jobs[0].request_id})
            return [PredictionFailed("the model failed to predict these rows")]
        ends = list(accumulate(len(job.rows) for job in jobs))
        per_job = [values[end - len(job.rows) : end] for job, end in zip(jobs, ends, strict=True)]
        if self.shadow is None:
            self._record(model, jobs, per_job, None)
        else:  # recorded once the shadow scored the batch (or declined to), from its thread
            self.shadow.offer(
                ServedBatch(model, rows, values, lambda shadow: self._record(model, jobs, per_job, shadow))
            )
        return per_job

    def _record(
        self, model: LoadedModel, jobs: list[_Job], per_job: list[list[Any]], shadow: ShadowPredictions | None
    ) -> None:
        shadow_per_job = _split_like(shadow.values, per_job) if shadow else [[None] * len(p) for p in per_job]
        shadow_version = shadow.version if shadow else None
        samples_per_job = [
            [
                Sample(
                    job.received_at,
                    job.request_id,
                    model.name,
                    model.version,
                    row,
                    prediction,
                    shadow_version,
                    shadow_prediction,
                )
                for row, prediction, shadow_prediction in zip(
                    job.rows, predictions, shadow_predictions, strict=True
                )
            ]
            for job, predictions, shadow_predictions in zip(jobs, per_job, shadow_per_job, strict=True)
        ]
        if self.ledger is not None:
            self.ledger.offer(self._ledger_rows(model, samples_per_job))
        samples = [sample for job_samples in samples_per_job for sample in job_samples]
        dropped = self.samples.extend(samples)
        if dropped:
            metrics.SAMPLES_DROPPED.inc(dropped)
        metrics.PREDICTIONS.labels(model.name, model.version).inc(len(samples))
        batch_size = metrics.BATCH_SIZE.labels(model.name)
        for job in jobs:
            batch_size.observe(len(job.rows))
        value = self._prediction_value.labels(model.name)
        for sample in samples:
            if isinstance(sample.prediction, int | float):
                value.observe(sample.prediction)

    def _ledger_rows(self, model: LoadedModel, samples_per_job: list[list[Sample]]) -> list[dict[str, Any]]:
        """The sampled rows as ledger records, with the ids the responses carry (`<request id>:<row>`)."""
        rows: list[dict[str, Any]] = []
        for samples in samples_per_job:
            for row, sample in enumerate(samples):
                pid = prediction_id(sample.request_id, row)
                if isinstance(sample.prediction, int | float) and is_sampled(pid, self.ledger_sample_rate):
                    shadow = sample.shadow_prediction
                    scored = isinstance(shadow, int | float)
                    rows.append(
                        {
                            "id": pid,
                            "request_id": sample.request_id,
                            "model_name": model.name,
                            "model_version": model.version,
                            "model_alias": model.ref.alias,
                            "predicted_at": datetime.fromtimestamp(sample.timestamp, UTC),
                            "features": sample.features,
                            "prediction": float(sample.prediction),
                            "shadow_version": sample.shadow_version if scored else None,
                            "shadow_prediction": float(shadow) if scored else None,
                        }
                    )
        return rows


def _describe(follower: ModelFollower, role: str) -> dict[str, Any]:
    model = follower.current
    return {
        "role": role,
        "alias": follower.alias,
        "version": model.version if model else None,
        "ready": model is not None,
    }


def _split_like(flat: list[Any], groups: list[list[Any]]) -> list[list[Any]]:
    ends = accumulate(len(group) for group in groups)
    return [flat[end - len(group) : end] for group, end in zip(groups, ends, strict=True)]
