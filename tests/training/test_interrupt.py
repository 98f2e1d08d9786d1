import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.synchronize import Event

import pytest
import torch
from torch.utils.data import Dataset

from training.interrupt import (
    StopRequest,
    StopSafeLoader,
    end_worker_processes,
    ignore_stop_signals_in_worker,
    stop_signals_held,
)


def test_sigterm_asks_to_stop_and_the_old_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.requested
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_ctrl_c_aborts() -> None:
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_disabled_it_leaves_the_signals_alone() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(enabled=False):
        assert signal.getsignal(signal.SIGTERM) is before


def _start_then_quiet(started: Event) -> None:
    """A worker's start: SIGTERM comes (within the 2 s) before it has set the signals to be ignored."""
    started.set()
    time.sleep(2.0)
    ignore_stop_signals_in_worker()


@pytest.mark.parametrize("held", [True, False])
def test_a_process_forked_with_the_signals_held_outlives_a_sigterm_before_it_ignores_them(held: bool) -> None:
    context = multiprocessing.get_context("fork")
    started = context.Event()
    child = context.Process(target=_start_then_quiet, args=(started,))
    with stop_signals_held() if held else contextlib.nullcontext():
        child.start()
    assert started.wait(30) and child.pid is not None
    os.kill(child.pid, signal.SIGTERM)
    child.join(30)
    assert child.exitcode == (0 if held else -signal.SIGTERM)
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the block has ended


class _WorkerSignals(Dataset[tuple[bool, bool, int]]):
    """Item i: (SIGTERM ignored, SIGTERM blocked, the value the loader's own worker_init_fn set)."""

    seen = 0

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[bool, bool, int]:
        ignored = signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        return ignored, blocked, _WorkerSignals.seen


def _own_init(worker_id: int) -> None:
    _WorkerSignals.seen = 100 + worker_id


def test_stop_safe_loader_workers_ignore_the_signals_unblocked_and_run_the_loaders_own_init() -> None:
    loader: StopSafeLoader[tuple[bool, bool, int]] = StopSafeLoader(
        _WorkerSignals(), batch_size=None, num_workers=2, worker_init_fn=_own_init
    )
    items = list(loader)
    assert [(bool(i), bool(b)) for i, b, _ in items] == [(True, False)] * 2
    assert sorted(int(s) for _, _, s in items) == [100, 101]
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the main process's are untouched
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert torch.utils.data.get_worker_info() is None


def test_closing_a_stop_safe_loader_ends_the_workers_it_keeps_across_epochs() -> None:
    """They ignore SIGTERM: left running, they would hang multiprocessing's exit, which joins them."""
    before = set(multiprocessing.active_children())
    loader: StopSafeLoader[tuple[bool, bool, int]] = StopSafeLoader(
        _WorkerSignals(), batch_size=None, num_workers=2, persistent_workers=True
    )
    assert len(list(loader)) == 2 and len(list(loader)) == 2  # a second epoch, the same workers
    workers = set(multiprocessing.active_children()) - before
    assert len(workers) == 2
    try:
        loader.close()
        assert not any(worker.is_alive() for worker in workers)
        assert len(list(loader)) == 2  # a loader closed can start new workers
        loader.close()
        loader.close()  # closing twice, or with no workers, is harmless
    finally:  # where it failed: end them here, or this test process would hang at its exit
        if multiprocessing.active_children():
            watch = signal.getsignal(signal.SIGCHLD)
            end_worker_processes()
            signal.signal(signal.SIGCHLD, watch)


def _ignore_sigterm_and_wait() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pause()


def test_end_worker_processes_kills_children_that_ignore_sigterm() -> None:
    child = multiprocessing.get_context("fork").Process(target=_ignore_sigterm_and_wait, daemon=True)
    child.start()
    watch = signal.getsignal(signal.SIGCHLD)  # torch's, where a loader has run in this process
    try:
        assert end_worker_processes() >= 1
    finally:
        signal.signal(signal.SIGCHLD, watch)
    assert not child.is_alive() and child.exitcode == -signal.SIGKILL
