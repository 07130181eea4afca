"""Writes sampled predictions to the ledger in a background thread, so the predict path never waits on the database.

`offer()` only appends to a bounded in-memory queue. The writer thread connects (retrying with backoff),
migrates the schema, then drains the queue in batches. While the database is down or slow the queue
fills; past its bound new rows are dropped, and every dropped row is counted
(`predictor_ledger_dropped_rows_total`), so a gap in the ledger is never silent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from predictor import metrics
from predictor.ledger.store import LedgerStore, migrate

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
PURGE_INTERVAL_SECONDS = 600.0
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0


class LedgerWriter:
    """One thread, one bounded queue, batches of up to BATCH_ROWS rows per transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        queue_rows: int,
        retention: timedelta,
        max_rows: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = LedgerStore(engine)
        self.queue_rows = queue_rows
        self.retention = retention
        self.max_rows = max_rows
        self._clock = clock
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._stopped = False
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        metrics.LEDGER_QUEUE_ROWS.set_function(self.__len__)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def ready(self) -> bool:
        """True once the schema is migrated: the feedback route answers 503 before that."""
        return self._ready.is_set()

    def start(self) -> None:
        self._thread.start()

    def offer(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue rows for writing; never blocks. Rows past the queue's bound are dropped and counted."""
        metrics.LEDGER_SAMPLED.inc(len(rows))
        if self._stopped:  # nothing would write them any more: counted, not silently queued
            metrics.LEDGER_DROPPED.labels("shutdown").inc(len(rows))
            return
        with self._lock:
            room = self.queue_rows - len(self._queue)
            self._queue.extend(rows[: max(room, 0)])
        if len(rows) > room:
            metrics.LEDGER_DROPPED.labels("queue_full").inc(len(rows) - max(room, 0))
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what the database takes within `timeout`; whatever is left is counted as dropped."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            self._stopped = True
            left, self._queue = len(self._queue), deque()
        if left:
            metrics.LEDGER_DROPPED.labels("shutdown").inc(left)
            log.warning("ledger rows not written before shutdown", extra={"rows": left})

    # ---- in the writer thread

    def _run(self) -> None:
        try:
            self._drain()
        except (
            Exception
        ):  # a bug or a refused migration: rows keep being counted as dropped once the queue is full
            log.exception("the ledger writer stopped; predictions are no longer written")

    def _drain(self) -> None:
        if not self._retry(self._migrate, "the ledger database is unreachable; retrying"):
            return
        next_purge = self._clock()
        while not (self._stopping.is_set() and not self._queue):
            if self._clock() >= next_purge:
                self._purge()  # once per interval, never retried in a loop: writes must go on
                next_purge = self._clock() + PURGE_INTERVAL_SECONDS
            batch = self._peek()
            if batch:
                if not self._write(batch):
                    return  # stopping while the database is down: stop() counts what is left
                self._done(len(batch))
            elif not self._stopping.is_set():
                self._wakeup.wait(1.0)
                self._wakeup.clear()

    def _migrate(self) -> None:
        migrate(self.store.engine)
        self._ready.set()
        log.info("ledger database ready", extra={"database": self.store.engine.url.render_as_string()})

    def _purge(self) -> None:
        try:
            deleted = self.store.purge(retention=self.retention, max_rows=self.max_rows)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not purge the ledger; next try in %.0f s", PURGE_INTERVAL_SECONDS,
                        extra={"error": str(getattr(exc, "orig", exc))})  # fmt: skip
            return
        if deleted:
            log.info("purged the ledger", extra={"rows": deleted})

    def _peek(self) -> list[dict[str, Any]]:
        """The next batch, left in the queue until it is written: the queue's bound covers it too."""
        with self._lock:
            return list(islice(self._queue, BATCH_ROWS))

    def _done(self, rows: int) -> None:
        with self._lock:
            for _ in range(min(rows, len(self._queue))):  # stop() may have emptied the queue meanwhile
                self._queue.popleft()

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        """Retry while the database is unreachable (the queue's bound limits what waits); drop on bad data.

        False only when the writer stops before the database came back."""
        try:
            written = self._retry(
                lambda: self.store.insert_predictions(batch), "ledger write failed; retrying"
            )
        except sa.exc.DBAPIError as exc:  # the database refused these rows: retrying would not help
            log.error(
                "ledger rows rejected by the database", extra={"rows": len(batch), "error": str(exc.orig)}
            )
            metrics.LEDGER_DROPPED.labels("write_failed").inc(len(batch))
            return True
        if written:
            metrics.LEDGER_WRITTEN.inc(len(batch))
        return written

    def _retry(self, action: Callable[[], None], message: str) -> bool:
        """Run `action` until it succeeds (True) or the writer stops (False); only connection errors retry."""
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                action()
                return True
            except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
                log.warning(message, extra={"error": str(getattr(exc, "orig", exc)) or type(exc).__name__})
            if self._stopping.wait(delay):
                return False
            delay = min(delay * 2, RETRY_MAX_SECONDS)
