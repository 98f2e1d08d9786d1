"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM (`docker stop`, a scheduler ending the
job) asks the loop to stop after the step it is on and save where it stopped, for `--resume`."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from torch.utils.data import DataLoader

log = logging.getLogger("training.interrupt")
SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


class StopRequest:
    """A context manager whose handlers turn the first SIGINT or SIGTERM into `requested`; a second
    SIGINT aborts at once (KeyboardInterrupt) without saving. The previous handlers come back on
    exit. Inactive (signals as before) when `enabled` is False or off the main thread, where Python
    cannot install handlers."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self.signum: int | None = None  # the signal that asked
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> StopRequest:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
            log.info("Ctrl-C or SIGTERM stops the run after the step it is on, to go on with --resume")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        log.warning(
            "%s: stopping after this step; --resume goes on from the state it leaves saved;"
            " Ctrl-C again aborts without saving",
            signal.Signals(signum).name,
        )


class RunStoppedError(Exception):
    """A run stopped by a signal before it finished (its final evaluation included); its state is saved
    in `run_dir`, for --resume."""

    def __init__(self, run_dir: Path, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; {run_dir}/state holds it, for --resume")
        self.run_dir, self.signum = run_dir, signum

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def ignore_stop_signals_in_worker() -> None:
    """For DataLoader workers: Ctrl-C in a terminal reaches the whole process group, as a job
    scheduler's SIGTERM may, and a worker it ended would fail the loader. The main process decides
    when to stop, and its workers end with it (they watch their parent). A worker forked with the
    signals held (`StopSafeLoader`) lets them go here, once they are ignored: one that arrived
    meanwhile is dropped."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (blocked: kept pending) in this thread meanwhile; they reach it,
    and its handlers, when the block ends. A process forked meanwhile starts with them held too."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _QuietInit:
    """A worker_init_fn that ignores the stop signals (`ignore_stop_signals_in_worker`), then calls
    the loader's own one, if any."""

    def __init__(self, then: Callable[[int], None] | None) -> None:
        self.then = then

    def __call__(self, worker_id: int) -> None:
        ignore_stop_signals_in_worker()
        if self.then is not None:
            self.then(worker_id)


class StopSafeLoader(DataLoader[T]):
    """A DataLoader whose workers never die of a Ctrl-C or SIGTERM sent to the process group: they
    are forked with the signals held (`stop_signals_held`) and ignore them before letting them go, so
    one that comes while they start cannot end them either (a worker ended so failed the loader, and
    the run's exit then waited forever on its sibling, which ignored the SIGTERM meant to end it).
    Takes DataLoader's arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["worker_init_fn"] = _QuietInit(kwargs.get("worker_init_fn"))
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Any:
        with stop_signals_held():  # the workers are forked here
            return super().__iter__()

    def close(self) -> None:
        """End the workers that persist across epochs (`persistent_workers`) now, as DataLoader does
        only once it is garbage: they ignore SIGTERM, and a process that still held them at its exit
        (a run stopped inside Python, its loader kept alive by the exception's traceback) would wait
        forever in multiprocessing's exit, which joins its children after a SIGTERM."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def end_worker_processes() -> int:
    """Kill (SIGKILL) the child processes still running - loader workers left by a run that failed
    or stopped: they ignore SIGTERM, so Python's exit, which ends such children with it and waits
    for them, would wait forever. For the end of a process: the loaders' own watch on their workers
    (torch's SIGCHLD handler) is turned off first. Returns how many there were."""
    children = multiprocessing.active_children()
    if children:  # torch's SIGCHLD handler would raise for each worker killed here
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout=5)
    return len(children)
