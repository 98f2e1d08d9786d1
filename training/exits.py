"""How a training tool run as `python -m training.<tool>` ends when it does not finish.

- A run stopped by Ctrl-C or SIGTERM (`RunStoppedError`, its state saved) exits with 130 or 143, as a
  shell reports a process ended by the signal; a plain Ctrl-C (KeyboardInterrupt) exits with 130.
- SIGTERM where no training loop handles it (an export, an evaluation, a tool's last save) ends the
  tool as Ctrl-C would, through its `finally` and `except` blocks, so that what it was writing is
  left as it was (`models.atomic.staged_folder` removes its copy), and exits with 143.
- An error in what the tool was given - data, a checkpoint, a config, flags that do not fit together,
  a file it cannot read or write - prints `error: <message>` and exits with 1, without a traceback:
  the message says what is wrong. Set DIGITSERVE_TRACEBACK=1 to see where it was raised.
- Anything else is a bug, and keeps its traceback.

Whichever way it ends, no DataLoader worker outlives it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from models.load_errors import LOAD_ERRORS
from training.interrupt import RunStoppedError, end_worker_processes

# ValueError covers `training.data.DataError`, config and flag checks; OSError a missing or unreadable
# file; the others a checkpoint or one of its parts that cannot be loaded.
INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, *LOAD_ERRORS)
TRACEBACK_ENV = "DIGITSERVE_TRACEBACK"


class TerminatedError(BaseException):
    """SIGTERM outside a training loop. A BaseException, as KeyboardInterrupt is, so that no `except
    Exception` of a tool takes it for an error to handle."""


def terminate_in(pid: int) -> Callable[[int, FrameType | None], None]:
    """A SIGTERM handler that raises `TerminatedError` in the process `pid`; a process forked from it
    (a DataLoader worker) ends by the signal, as it did without the handler (but for one signalled in
    the instant after its fork, before Python's after-fork step drops what is pending: it goes on
    until its parent ends it)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise TerminatedError

    return handle


def run_tool(main: Callable[[], object]) -> None:
    """Call a tool's `main()` and turn how it fails into an exit code and a message (module doc)."""
    # a training loop's StopRequest overrides this handler while it runs
    previous = signal.signal(signal.SIGTERM, terminate_in(os.getpid()))
    try:
        try:
            main()
        finally:  # loader workers a failed run left would keep Python's exit waiting
            end_worker_processes()
    except RunStoppedError as stopped:
        raise SystemExit(stopped.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except TerminatedError:
        print("terminated (SIGTERM)", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except INPUT_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"error: {error}\n({TRACEBACK_ENV}=1 shows where it was raised)", file=sys.stderr)
        raise SystemExit(1) from None
    finally:  # None: a handler not set from Python, which cannot be set back
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
