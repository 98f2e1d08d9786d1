import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.atomic import replace_file, staged_folder, write_text


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_folder(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("old a")
    (folder / "sub" / "b.bin").write_bytes(b"\x00old b")
    return folder


def test_write_text_creates_the_folder_and_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "meta.json"
    write_text(path, "first")
    write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["meta.json"]


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old weights")

    def half_then_fail(partial: Path) -> None:
        partial.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_file(path, half_then_fail)
    assert path.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_staged_changes_replace_the_folder_when_done_and_keep_the_files_left_alone(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "ckpt")
    with staged_folder(folder) as staging:
        (staging / "a.json").write_text("new a")
        (staging / "c.json").write_text("added")
        assert (folder / "a.json").read_text() == "old a"  # untouched until the block ends
        assert not (folder / "c.json").exists()
    assert contents(folder) == {"a.json": b"new a", "c.json": b"added", "sub/b.bin": b"\x00old b"}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging or old copy left


def test_a_staged_change_that_fails_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "ckpt")
    before = contents(folder)
    with pytest.raises(KeyboardInterrupt), staged_folder(folder) as staging:
        (staging / "a.json").write_text("new a")
        (staging / "sub" / "b.bin").unlink()
        raise KeyboardInterrupt
    assert contents(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_a_new_folder_appears_only_when_its_block_ends(tmp_path: Path) -> None:
    with staged_folder(tmp_path / "runs" / "last") as staging:
        (staging / "a.json").write_text("a")
        assert not (tmp_path / "runs" / "last").exists()
    assert contents(tmp_path / "runs" / "last") == {"a.json": b"a"}
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "runs" / "best") as staging:
        (staging / "a.json").write_text("a")
        raise RuntimeError
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["last"]


def test_a_symlinked_folder_keeps_its_link_and_its_target_changes(tmp_path: Path) -> None:
    target = make_folder(tmp_path / "stage9")
    link = tmp_path / "default"
    link.symlink_to(target)
    with staged_folder(link) as staging:
        (staging / "a.json").write_text("new a")
    assert link.is_symlink()
    assert (target / "a.json").read_text() == "new a"


def test_a_file_is_not_staged_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "ckpt").write_text("not a folder")
    with pytest.raises(ValueError, match="not a folder"), staged_folder(tmp_path / "ckpt"):
        pass
    assert (tmp_path / "ckpt").read_text() == "not a folder"


def ended_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_copies_left_by_killed_writers_are_deleted_and_a_live_writers_kept(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "last")
    dead, alive = ended_pid(), os.getppid()
    make_folder(tmp_path / f".last.staging-{dead}")
    make_folder(tmp_path / f".last.staging-{alive}")
    (tmp_path / ".last.notes-1").write_text("not a copy")  # not named as a writer names its copies
    with staged_folder(folder) as staging:
        (staging / "a.json").write_text("new a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.notes-1", f".last.staging-{alive}", "last"]
    assert (folder / "a.json").read_text() == "new a"


def test_a_folder_moved_aside_by_a_writer_killed_in_its_swap_is_put_back(tmp_path: Path) -> None:
    dead = ended_pid()
    before = contents(make_folder(tmp_path / f".best.old-{dead}"))
    make_folder(tmp_path / f".best.staging-{dead}")  # its new copy, whole or not: not trusted
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "best"):
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    assert contents(tmp_path / "best") == before


class StopSignalError(Exception):
    pass


@pytest.fixture
def sigterm_raises() -> Iterator[None]:
    def handle(signum: int, frame: object) -> None:
        raise StopSignalError

    previous = signal.signal(signal.SIGTERM, handle)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_in_the_swap_waits_until_the_folder_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_raises: None
) -> None:
    folder = make_folder(tmp_path / "ckpt")
    rename = os.rename

    def rename_after_a_sigterm(src: Path, dst: Path) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives after the first rename's call, before the second
        rename(src, dst)

    monkeypatch.setattr("models.atomic.os.rename", rename_after_a_sigterm)
    with pytest.raises(StopSignalError), staged_folder(folder) as staging:
        (staging / "a.json").write_text("new a")
    assert (folder / "a.json").read_text() == "new a"
