"""Adaptive micro-batching: concurrent requests share one model call.

Requests queue up while the model is busy; when it is free, everything queued (up to `max_rows`) goes
into the next call. There is no timer: a lone request is served at once, and under load batches grow by
themselves to what arrives during one call. This is the lever behind BentoML's, MLServer's and Triton's
throughput for models whose per-call cost dwarfs their per-row cost (scikit-learn pipelines).

The model call runs in one dedicated thread, so the event loop keeps accepting and validating requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Job, Result]):
    job: Job
    rows: int
    future: asyncio.Future[Result] = field(repr=False)


class MicroBatcher(Generic[Job, Result]):
    """Merges concurrent requests into one model call: a scikit-learn call costs about the same for 1 row or 1000.

    `await submit(job, rows)` → the job's result, computed by `handler` together with its neighbours.

    `handler(jobs)` runs in the worker thread and returns one result per job, in order; a result that is
    an exception fails only that job's request.
    """

    def __init__(
        self,
        handler: Callable[[Sequence[Job]], Sequence[Result | BaseException]],
        *,
        max_rows: int,
        thread_initializer: Callable[[], None] | None = None,
    ):
        self._handler = handler
        self._max_rows = max_rows
        self._queue: deque[_Pending[Job, Result]] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference", initializer=thread_initializer)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        while self._queue:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, job: Job, rows: int) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(job, rows, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._take_batch()
                try:
                    results = await loop.run_in_executor(
                        self._executor, self._handler, [p.job for p in batch]
                    )
                except Exception as exc:  # the handler itself broke: fail this batch, keep serving
                    log.exception("micro-batch handler failed")
                    results = [exc] * len(batch)
                for pending, result in zip(batch, results, strict=True):
                    if pending.future.done():  # the client went away and the request was cancelled
                        continue
                    if isinstance(result, BaseException):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)

    def _take_batch(self) -> list[_Pending[Job, Result]]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self._max_rows:
            pending = self._queue.popleft()
            rows += pending.rows
            batch.append(pending)
        return batch
