"""How a training tool ends when it does not finish (training.exits)."""

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from models.checkpoint import CheckpointError
from training.data import DataError
from training.exits import TRACEBACK_ENV, run_tool
from training.interrupt import RunStoppedError


def raising(error: BaseException) -> Callable[[], None]:
    def main() -> None:
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [DataError("annotation file /d/train.json does not exist"), CheckpointError("checkpoint x: missing y")],
)
def test_an_input_error_prints_one_message_and_exits_1(
    error: Exception, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_tool(raising(error))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {error}\n") and "Traceback" not in err


def test_the_traceback_variable_lets_an_input_error_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(DataError, match="no images"):
        run_tool(raising(DataError("no images")))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_run_exits_as_the_signal_says(signum: int, code: int, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_tool(raising(RunStoppedError(tmp_path, signum)))
    assert exit_.value.code == code


def test_ctrl_c_exits_130_and_a_bug_keeps_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_tool(raising(KeyboardInterrupt()))
    assert exit_.value.code == 130 and capsys.readouterr().err == "interrupted\n"
    with pytest.raises(KeyError):
        run_tool(raising(KeyError("a bug")))
    assert run_tool(lambda: 42) is None  # a tool that finishes just returns


def test_every_training_tool_ends_through_run_tool() -> None:
    tools = sorted((Path(__file__).resolve().parents[2] / "training").glob("*.py"))
    with_main = [p for p in tools if 'if __name__ == "__main__":' in p.read_text()]
    assert len(with_main) >= 17
    for path in with_main:
        tail = path.read_text().split('if __name__ == "__main__":', 1)[1]
        assert tail.strip() == "run_tool(main)", path


def test_a_tool_given_a_missing_checkpoint_says_so_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "training.evaluate", "--checkpoint", str(tmp_path / "none")]
    cmd += ["--data", str(tmp_path), "--split", "valid", "--out", str(tmp_path / "eval")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"error: checkpoint {tmp_path / 'none'}: missing checkpoint.json")
    assert "Traceback" not in done.stderr


# A tool that changes a folder in a staged copy and waits there to be stopped; before it, a forked
# child ended by SIGTERM reports how it ended.
STAGED_TOOL = """
import multiprocessing, os, signal, sys, time
from pathlib import Path
from models.atomic import staged_folder
from training.exits import run_tool

def main():
    context = multiprocessing.get_context("fork")
    started = context.Event()
    child = context.Process(target=lambda: (started.set(), time.sleep(60)))
    child.start()
    started.wait(30)
    os.kill(child.pid, signal.SIGTERM)
    child.join()
    print("child", child.exitcode, flush=True)
    with staged_folder(sys.argv[1]) as staging:
        (staging / "a.json").write_text("new")
        print("ready", flush=True)
        time.sleep(60)

run_tool(main)
"""


def test_sigterm_ends_a_tool_with_143_and_leaves_what_it_was_writing_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "a.json").write_text("old")
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-c", STAGED_TOOL, str(folder)]
    tool = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert tool.stdout is not None
    lines = [tool.stdout.readline().strip(), tool.stdout.readline().strip()]
    tool.send_signal(signal.SIGTERM)
    _out, err = tool.communicate(timeout=60)
    assert lines == [f"child {-signal.SIGTERM}", "ready"]  # a forked worker still ends by the signal
    assert tool.returncode == 143, err
    assert err.strip().endswith("terminated (SIGTERM)")
    assert (folder / "a.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # its staging copy removed
