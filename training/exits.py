"""How a training tool run as `python -m training.<tool>` ends when it does not finish.

- A run stopped by Ctrl-C or SIGTERM (`RunStoppedError`, its state saved) exits with 130 or 143, as a
  shell reports a process ended by the signal; a plain Ctrl-C (KeyboardInterrupt) exits with 130.
- An error in what the tool was given - data, a checkpoint, a config, flags that do not fit together,
  a file it cannot read or write - prints `error: <message>` and exits with 1, without a traceback:
  the message says what is wrong. Set DIGITSERVE_TRACEBACK=1 to see where it was raised.
- Anything else is a bug, and keeps its traceback.

Whichever way it ends, no DataLoader worker outlives it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from models.load_errors import LOAD_ERRORS
from training.interrupt import RunStoppedError, end_worker_processes

# ValueError covers `training.data.DataError`, config and flag checks; OSError a missing or unreadable
# file; the others a checkpoint or one of its parts that cannot be loaded.
INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, *LOAD_ERRORS)
TRACEBACK_ENV = "DIGITSERVE_TRACEBACK"


def run_tool(main: Callable[[], object]) -> None:
    """Call a tool's `main()` and turn how it fails into an exit code and a message (module doc)."""
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
    except INPUT_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"error: {error}\n({TRACEBACK_ENV}=1 shows where it was raised)", file=sys.stderr)
        raise SystemExit(1) from None
