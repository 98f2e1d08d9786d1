"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM (`docker stop`, a scheduler ending the
job) asks the loop to stop after the step it is on and save where it stopped, for `--resume`."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("training.interrupt")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    when to stop, and its workers end with it (they watch their parent)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
