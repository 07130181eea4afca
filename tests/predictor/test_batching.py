"""MicroBatcher: concurrent submissions share one handler call; failures stay with their job."""

from __future__ import annotations

import asyncio
import threading

from predictor.batching import MicroBatcher


def test_concurrent_jobs_are_merged_while_the_handler_is_busy() -> None:
    calls: list[list[int]] = []
    release = threading.Event()

    def handler(jobs):
        calls.append(list(jobs))
        if len(calls) == 1:
            release.wait(5)  # the first call blocks while the others queue up
        return [job * 10 for job in jobs]

    async def scenario():
        batcher = MicroBatcher(handler, max_rows=100)
        batcher.start()
        first = asyncio.create_task(batcher.submit(0, 1))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.submit(i, 1)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return results

    assert asyncio.run(scenario()) == [0, 10, 20, 30, 40, 50]
    assert calls == [[0], [1, 2, 3, 4, 5]]


def test_batches_respect_max_rows_and_errors_fail_only_their_job() -> None:
    calls: list[list[int]] = []

    def handler(jobs):
        calls.append(list(jobs))
        return [ValueError("bad") if job == 2 else job for job in jobs]

    async def scenario():
        batcher = MicroBatcher(handler, max_rows=4)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, 2) for i in range(4)), return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results[:2] == [0, 1] and isinstance(results[2], ValueError) and results[3] == 3
    assert all(len(call) <= 2 for call in calls)  # 2 rows per job, at most 4 rows per call
