"""A bounded queue in front of one model, served by one worker thread that forms micro-batches.

The worker thread also builds the model (`setup`): loading, warming up and serving on one thread keeps
PyTorch's OpenMP pool tied to that thread. Measured on 2 CPU cores: a forward pass on a thread other than
the one that first used torch took 33 ms against 22 ms when the same thread did everything.

Requests `await submit(items)`; the worker takes up to `max_batch` items and runs the model off the event
loop. While the model is busy (work was already queued when it finished a batch) it waits at most
`max_wait_s` for a batch to fill; a request that finds it idle runs at once with whatever is queued
beside it, so a lone request pays no wait. When admitting a request's items would
exceed `max_queue`, it is refused at once (QueueFullError -> 503): nothing hangs. Its Retry-After is
the time the items already waiting should take at the recent seconds per item (`retry_after_s`), so
that refused clients come back when the backlog has drained rather than all in one second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.errors import NotReadyError, QueueFullError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)
MAX_RETRY_AFTER_S = 60
SMOOTHING = 0.3  # weight of the newest batch in the average seconds per item


def retry_after_s(pending: int, seconds_per_item: float | None) -> int:
    """Whole seconds for `pending` items at `seconds_per_item` (the recent average), between 1 and
    MAX_RETRY_AFTER_S; 1 before any batch was timed."""
    if seconds_per_item is None:
        return 1
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(pending * seconds_per_item)))


@dataclass
class _Job(Generic[T]):
    item: T
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (timeout, disconnect)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class MicroBatcher(Generic[T, R]):
    """`setup()` runs first on the worker thread and returns `run_batch(items) -> results` (same length,
    same order), which then runs on that thread only. `wait_started()` re-raises a failed setup."""

    def __init__(
        self,
        setup: Callable[[], Callable[[list[T]], list[R]]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self._setup = setup
        self._run_batch: Callable[[list[T]], list[R]] | None = None
        self._started = threading.Event()
        self._setup_error: BaseException | None = None
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._on_batch, self._on_depth = on_batch, on_depth
        self._queue: queue.Queue[_Job[T] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._seconds_per_item: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="digitserve-batcher", daemon=True)
        self._thread.start()

    def wait_started(self, timeout_s: float | None = None) -> None:
        """Block until setup has finished; raise its error if it failed."""
        if not self._started.wait(timeout_s):
            raise TimeoutError("the model thread did not finish its setup in time")
        if self._setup_error is not None:
            raise self._setup_error

    @property
    def pending(self) -> int:
        """Items admitted and not yet answered."""
        return self._pending

    @property
    def seconds_per_item(self) -> float | None:
        """The model's recent seconds per item (batch time / batch size, smoothed); None until timed."""
        return self._seconds_per_item

    def seed_pace(self, seconds_per_item: float) -> None:
        """A first estimate (e.g. the warm-up's time), for refusals before any batch was timed."""
        with self._lock:
            if self._seconds_per_item is None:
                self._seconds_per_item = seconds_per_item

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Queue `items` as one admission and wait for all their results."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise NotReadyError("the service is shutting down")
            if self._pending + len(items) > self.max_queue:
                wait_s = retry_after_s(self._pending, self._seconds_per_item)
                waiting = f"{self._pending} images are already waiting (limit {self.max_queue})"
                raise QueueFullError(
                    f"{waiting}; retry in {wait_s} s",
                    headers={"Retry-After": str(wait_s)},
                )
            self._pending += len(items)
            self._report_depth()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put(_Job(item, future, loop))
        return list(await asyncio.gather(*futures))

    def close(self, timeout_s: float) -> None:
        """Refuse new work, finish what is queued (up to `timeout_s`), stop the worker."""
        with self._lock:
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self._pending)

    def _work(self) -> None:
        try:
            self._run_batch = self._setup()
        except BaseException as exc:  # handed to wait_started(); nothing is served
            self._setup_error = exc
            with self._lock:
                self._closed = True
            return
        finally:
            self._started.set()
        self._serve()

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            try:
                job = self._queue.get_nowait()
                busy = True  # work was waiting: more is likely on its way, worth a short wait
            except queue.Empty:
                job = self._queue.get()
                busy = False  # idle until now: no wait, only what is already queued joins
            if job is None:
                break
            batch = [job]
            deadline = time.monotonic() + (self.max_wait_s if busy else 0.0)
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._run(batch)

    def _run(self, batch: list[_Job[T]]) -> None:
        start = time.perf_counter()
        outcomes = self._outcomes([job.item for job in batch])
        elapsed = time.perf_counter() - start
        per_item = elapsed / len(batch)
        with self._lock:  # before answering: a caller that has its answer is no longer pending
            self._pending -= len(batch)
            old = self._seconds_per_item
            self._seconds_per_item = per_item if old is None else (1 - SMOOTHING) * old + SMOOTHING * per_item
            self._report_depth()
        for job, (result, error) in zip(batch, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
        if self._on_batch is not None:
            self._on_batch(len(batch), elapsed)

    def _outcomes(self, items: list[T]) -> list[tuple[Any, BaseException | None]]:
        """(result, error) for each of `items`, in order: one `run_batch` call for all of them; when
        it fails on several, one call per item, so that an item the model cannot take fails only the
        request that sent it, not the others batched with it. The worker keeps serving either way."""
        try:
            assert self._run_batch is not None
            results = self._run_batch(items)
            if len(results) != len(items):
                raise RuntimeError(f"the model answered {len(results)} of {len(items)} items")
        except Exception as exc:
            if len(items) == 1:
                return [(None, exc)]
            log.warning(
                "a batch of %d failed (%s: %s); running its items one by one",
                len(items),
                type(exc).__name__,
                exc,
            )
            return [self._outcomes([item])[0] for item in items]
        return [(result, None) for result in results]
