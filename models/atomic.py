"""Writing checkpoint files and folders so that a write stopped halfway loses nothing.

A tool stopped while it writes (Ctrl-C, SIGTERM, a full disk, an error in its last step) must leave
the checkpoint it was writing as it was: the service refuses a checkpoint whose weights do not match
their recorded sha256, so a half-written one is a checkpoint lost. Two levels:

- `replace_file` / `write_text`: one file, written beside its path and renamed over it (`os.replace`
  is atomic on one file system), so a reader sees the old file or the new one, never a part.
- `staged_folder`: a change to several files of one folder (an export in place, an epoch's `last/`)
  is made in a copy beside it, which replaces the folder only when the change is done (Ctrl-C and
  SIGTERM wait for the two renames of that swap). A process killed outright (SIGKILL, or SIGTERM
  where nothing handles it) may leave that copy behind, and one killed between the two renames the
  old folder moved aside; the next `staged_folder` of that path deletes the copy and puts the folder
  back.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(partial)` with a path beside `path`, then rename what it wrote over `path`
    (creating its folder). When `write` raises, `path` is left as it was and the partial file is
    removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """`text` written to `path` as it is (no newline translation), all or nothing (`replace_file`)."""
    replace_file(path, lambda partial: partial.write_text(text, newline=""))


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """A copy of `folder` (an empty folder when it does not exist yet) to write into; when the block
    ends without an exception, the copy replaces `folder`, else it is removed and `folder` is left as
    it was. A symlinked `folder` is resolved first, so the link stays and its target is replaced."""
    target = Path(folder).resolve() if Path(folder).is_symlink() else Path(folder)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    _tidy_after_killed_writers(target)
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    if target.is_dir():
        shutil.copytree(target, staging, symlinks=True)
    else:
        staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_in(staging, target)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`, moving an existing `target` aside first and deleting it after.
    Ctrl-C and SIGTERM wait until both renames are done."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    with _signals_held():
        if target.exists():
            os.rename(target, old)
        os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive while the block runs are handled when it ends. Python runs its
    signal handlers on the main thread only, so elsewhere there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _frame: arrived.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in arrived:
            signal.raise_signal(signum)


def _tidy_after_killed_writers(target: Path) -> None:
    """Delete the staging copies that processes no longer running (or this one, earlier) left beside
    `target`, and put back a `target` that one of them had moved aside when it was killed."""
    if not target.parent.is_dir():
        return
    prefix = f".{target.name}."
    for leftover in sorted(target.parent.iterdir()):
        kind, _, pid = leftover.name.removeprefix(prefix).rpartition("-")
        if not leftover.name.startswith(prefix) or kind not in ("staging", "old") or not pid.isdigit():
            continue
        if int(pid) != os.getpid() and _running(int(pid)):
            continue  # another process is writing this folder now
        if kind == "old" and not target.exists():
            os.rename(leftover, target)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)  # signal 0: only asks
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    return True
