import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from service.batching import MAX_RETRY_AFTER_S, MicroBatcher, retry_after_s
from service.errors import NotReadyError, QueueFullError

Run = Callable[[list[int]], list[int]]


def gated(run: Run) -> tuple[Callable[[], Run], threading.Event]:
    """A setup that holds the worker until the event is set, so that requests queue up meanwhile: the
    worker then finds work waiting, as it does under load."""
    gate = threading.Event()

    def setup() -> Run:
        gate.wait(5)
        return run

    return setup, gate


def test_batches_fill_up_to_max_and_keep_order() -> None:
    sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return [i * 10 for i in items]

    setup, gate = gated(run)
    batcher = MicroBatcher(setup, max_batch=4, max_wait_s=0.2, max_queue=100)

    async def main() -> list[list[int]]:
        waiting = asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(4)))
        await asyncio.sleep(0.05)
        gate.set()
        return await waiting

    results = asyncio.run(main())
    batcher.close(5)
    assert results == [[i * 10, (i + 100) * 10] for i in range(4)]
    assert sizes == [4, 4]


def test_a_lone_request_to_an_idle_worker_does_not_wait_for_a_batch() -> None:
    sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher = MicroBatcher(lambda: run, max_batch=8, max_wait_s=30, max_queue=100)

    async def main() -> None:
        for item in (1, 2):  # each finds the worker idle; waiting for a batch would take 30 s
            assert await asyncio.wait_for(batcher.submit([item]), 5) == [item]
            await asyncio.sleep(0.05)

    asyncio.run(main())
    batcher.close(5)
    assert sizes == [1, 1]


def test_a_busy_worker_waits_for_a_batch_to_fill() -> None:
    """When work was queued while the model ran, the next batch waits (up to max_wait_s) for more."""
    sizes: list[int] = []
    release = threading.Event()

    def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if items == [1]:
            release.wait(5)
        return items

    batcher = MicroBatcher(lambda: run, max_batch=2, max_wait_s=5, max_queue=100)

    async def main() -> list[list[int]]:
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.05)  # the model is now busy with [1]
        second = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.sleep(0.1)  # the worker has taken [2] and waits for a second item
        third = asyncio.ensure_future(batcher.submit([3]))
        return [await asyncio.wait_for(f, 5) for f in (first, second, third)]

    assert asyncio.run(main()) == [[1], [2], [3]]
    batcher.close(5)
    assert sizes == [1, 2]


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    release = threading.Event()
    batcher = MicroBatcher(
        lambda: lambda items: [release.wait(5) for _ in items], max_batch=1, max_wait_s=0, max_queue=2
    )

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit([1, 2]))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError) as info:
            await batcher.submit([3])
        assert info.value.headers["Retry-After"] == "1"
        release.set()
        assert await first == [True, True]
        assert await batcher.submit([4]) == [True]  # capacity is back

    asyncio.run(main())
    batcher.close(5)


@pytest.mark.parametrize(
    ("pending", "seconds_per_item", "expected"),
    [(10, None, 1), (0, 0.5, 1), (3, 0.05, 1), (15, 0.1, 2), (64, 0.3, 20), (10_000, 0.3, MAX_RETRY_AFTER_S)],
)
def test_retry_after_is_the_backlog_at_the_recent_pace(
    pending: int, seconds_per_item: float | None, expected: int
) -> None:
    assert retry_after_s(pending, seconds_per_item) == expected


def test_a_refusal_says_when_the_backlog_should_have_drained() -> None:
    batcher = MicroBatcher(
        lambda: lambda items: [time.sleep(0.1) or i for i in items], max_batch=1, max_wait_s=0, max_queue=15
    )

    async def main() -> None:
        assert await batcher.submit([0]) == [0]  # timed: ~0.1 s per item
        assert batcher.seconds_per_item is not None and 0.1 <= batcher.seconds_per_item < 0.13
        backlog = asyncio.ensure_future(batcher.submit(list(range(15))))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="retry in 2 s") as info:
            await batcher.submit([99])
        assert info.value.headers["Retry-After"] == "2"  # 15 items x ~0.1 s
        assert await backlog == list(range(15))

    asyncio.run(main())
    batcher.close(5)


def test_a_seeded_pace_stands_until_a_batch_is_timed() -> None:
    batcher = MicroBatcher(lambda: lambda items: items, max_batch=1, max_wait_s=0, max_queue=4)
    batcher.wait_started()
    batcher.seed_pace(0.5)
    batcher.seed_pace(9.0)  # a first estimate only: the second does not replace it
    assert batcher.seconds_per_item == 0.5
    asyncio.run(batcher.submit([1]))
    assert batcher.seconds_per_item is not None and batcher.seconds_per_item < 0.5 * (1 - 0.3) + 0.01
    batcher.close(5)


def test_errors_reach_every_caller_and_worker_survives() -> None:
    calls = {"n": 0}

    def run(items: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return items

    batcher = MicroBatcher(lambda: run, max_batch=8, max_wait_s=0, max_queue=10)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit([1])
        assert await batcher.submit([2]) == [2]
        assert batcher.pending == 0

    asyncio.run(main())
    batcher.close(5)


def test_closed_batcher_refuses_new_work() -> None:
    batcher = MicroBatcher(lambda: lambda items: items, max_batch=1, max_wait_s=0, max_queue=10)
    batcher.close(5)
    with pytest.raises(NotReadyError):
        asyncio.run(batcher.submit([1]))


def test_setup_runs_on_the_worker_thread_and_its_error_is_reraised() -> None:
    threads: list[str] = []

    def setup() -> object:
        threads.append(threading.current_thread().name)
        return lambda items: [threading.current_thread().name for _ in items]

    batcher = MicroBatcher(setup, max_batch=1, max_wait_s=0, max_queue=10)
    batcher.wait_started(5)
    assert asyncio.run(batcher.submit([1])) == threads == ["digitserve-batcher"]
    batcher.close(5)

    def broken() -> object:
        raise OSError("no such checkpoint")

    failed = MicroBatcher(broken, max_batch=1, max_wait_s=0, max_queue=10)
    with pytest.raises(OSError, match="no such checkpoint"):
        failed.wait_started(5)
    with pytest.raises(NotReadyError):
        asyncio.run(failed.submit([1]))


def test_an_item_the_model_cannot_take_fails_only_its_own_request() -> None:
    """A batch that fails is run again item by item: the other requests batched with the bad item get
    their answers, and the worker keeps serving."""
    sizes: list[int] = []
    started = threading.Event()

    def run(items: list[int]) -> list[int]:
        started.wait(5)
        sizes.append(len(items))
        if -1 in items:
            raise ValueError("cannot take -1")
        return [i * 10 for i in items]

    setup, gate = gated(run)
    batcher = MicroBatcher(setup, max_batch=8, max_wait_s=0.2, max_queue=100)

    async def main() -> list[object]:
        calls = [batcher.submit([1, 2]), batcher.submit([-1]), batcher.submit([3])]
        waiting = asyncio.gather(*calls, return_exceptions=True)
        await asyncio.sleep(0.05)
        gate.set()
        started.set()
        return await waiting

    first, bad, last = asyncio.run(main())
    assert first == [10, 20] and last == [30]
    assert isinstance(bad, ValueError) and "cannot take -1" in str(bad)
    assert sizes[0] == 4 and sorted(sizes[1:]) == [1, 1, 1, 1]
    assert asyncio.run(batcher.submit([4])) == [40] and batcher.pending == 0
    batcher.close(5)


def test_a_model_that_answers_too_few_items_is_an_error_not_a_dead_worker() -> None:
    broken = MicroBatcher(lambda: lambda items: [], max_batch=1, max_wait_s=0, max_queue=10)

    async def submit(item: int) -> list[int]:  # a dead worker would never answer: fail, not hang
        return await asyncio.wait_for(broken.submit([item]), 5)

    with pytest.raises(RuntimeError, match="answered 0 of 1 items"):
        asyncio.run(submit(5))
    with pytest.raises(RuntimeError, match="answered 0 of 1 items"):
        asyncio.run(submit(6))  # the worker is still there to answer
    broken.close(5)
