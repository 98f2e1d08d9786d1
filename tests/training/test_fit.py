"""The small trainers' epochs (training.fit): the state saved after each epoch, a run stopped by a
signal, and `--resume` going on from it to the weights of a run never stopped."""

import contextlib
import json
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import read_checkpoint_meta
from tests.helpers import StopAfter, sigterm_once_workers_run
from training import crops, pretrain, reader, refiner, sampling
from training.fit import FitState, recorded_flags
from training.interrupt import RunStoppedError
from training.state import saved_progress

SMALL = ["--epochs", "2", "--max-steps", "3", "--batch-size", "8", "--size", "24", "--no-progress"]


def rows(folder: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def losses(folder: Path) -> list[float]:
    return [r["train_loss"] for r in rows(folder)]


# StopAfter is asked after each step but an epoch's last (3 here): ask 1 is after epoch 1's step 1,
# ask 3 after epoch 2's step 1; a late ask 2 is a signal during epoch 1's last step.
@pytest.mark.parametrize(
    ("asks", "late", "workers", "epochs_saved"),
    [(3, False, 0, 1), (1, False, 0, 0), (2, True, 0, 1), (3, False, 2, 1)],
    ids=["in-epoch-2", "in-epoch-1", "during-epoch-1s-last-step", "with-loader-workers"],
)
def test_a_stopped_reader_resumes_to_the_reader_of_a_run_never_stopped(
    synth_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    asks: int,
    late: bool,
    workers: int,
    epochs_saved: int,
) -> None:
    args = ["--config", "fast", "--data", str(synth_dir), *SMALL, "--width", "4", "--workers", str(workers)]
    whole = reader.main([*args, "--out", str(tmp_path / "whole")])
    out = tmp_path / "stopped"
    monkeypatch.setattr(crops, "StopRequest", lambda: StopAfter(asks, late))
    with pytest.raises(RunStoppedError) as stop:
        reader.main([*args, "--out", str(out)])
    monkeypatch.undo()
    assert stop.value.exit_code == 143 and stop.value.run_dir == out
    assert saved_progress(out / "state")["epoch"] == epochs_saved == len(rows(out))
    assert not (out / "reader.json").exists()  # the reader is written once its last epoch is done
    resumed = reader.main([*args, "--out", str(out), "--resume"])
    assert resumed.sha256 == whole.sha256
    assert losses(out) == losses(tmp_path / "whole") and [r["epoch"] for r in rows(out)] == [1, 2]


def test_a_resume_that_drew_other_augmentations_would_differ(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each crop's jitter is drawn from (seed, epoch, index) (`training.sampling.KeyedDraws`): a resume
    that keyed epoch 2 as another epoch would train on other crops. (That the check above can fail.)"""
    args = ["--config", "fast", "--data", str(synth_dir), *SMALL, "--width", "4", "--workers", "0"]
    whole = reader.main([*args, "--out", str(tmp_path / "whole")])
    monkeypatch.setattr(crops, "StopRequest", lambda: StopAfter(3))
    with pytest.raises(RunStoppedError):
        reader.main([*args, "--out", str(tmp_path / "stopped")])
    monkeypatch.undo()
    keyed = sampling.item_seed
    monkeypatch.setattr(sampling, "item_seed", lambda seed, epoch, index: keyed(seed, epoch + 1, index))
    resumed = reader.main([*args, "--out", str(tmp_path / "stopped"), "--resume"])
    assert resumed.sha256 != whole.sha256


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed-draws", "the-workers-own-draws"])
def test_loader_workers_change_no_draw_of_a_reader(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    """Two workers prepare the crops a run without workers prepares itself, jitter included, so the
    reader is the same; without the keyed draws each worker's own generator jitters them."""
    if not keyed:
        monkeypatch.setattr(sampling, "seeded_draws", lambda seed: contextlib.nullcontext())
    args = ["--config", "fast", "--data", str(synth_dir), *SMALL, "--width", "4"]
    alone = reader.main([*args, "--workers", "0", "--out", str(tmp_path / "alone")])
    helped = reader.main([*args, "--workers", "2", "--out", str(tmp_path / "helped")])
    assert (helped.sha256 == alone.sha256) == keyed


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stopped_refiner_resumes_to_the_refiner_of_a_run_never_stopped(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """With loader workers too: they persist across epochs, but each crop's jitter is keyed by the
    epoch and the crop, not drawn from the worker's generator."""
    args = ["--config", "fast", "--data", str(synth_dir), *SMALL, "--width", "4", "--workers", str(workers)]
    whole = refiner.main([*args, "--out", str(tmp_path / "whole")])
    out = tmp_path / "stopped"
    monkeypatch.setattr(refiner, "StopRequest", lambda: StopAfter(3))
    with pytest.raises(RunStoppedError):
        refiner.main([*args, "--out", str(out)])
    monkeypatch.undo()
    assert saved_progress(out / "state")["epoch"] == 1 and not (out / "refiner.json").exists()
    assert refiner.main([*args, "--out", str(out), "--resume"]).sha256 == whole.sha256
    assert losses(out) == losses(tmp_path / "whole")


@pytest.mark.slow
def test_a_stopped_pretraining_resumes_and_keeps_the_best_epoch_of_all(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--config", "fast", "--data", str(synth_dir), "--epochs", "3", "--max-steps", "2"]
    args += ["--batch-size", "8", "--size", "32", "--workers", "0", "--no-progress"]
    whole = pretrain.main([*args, "--out", str(tmp_path / "whole")])
    monkeypatch.setattr(crops, "StopRequest", lambda: StopAfter(2))  # in epoch 2, after its step 1
    with pytest.raises(RunStoppedError):
        pretrain.main([*args, "--out", str(tmp_path / "stopped")])
    monkeypatch.undo()
    best = pretrain.main([*args, "--out", str(tmp_path / "stopped"), "--resume"])
    assert read_checkpoint_meta(best).weights_sha256 == read_checkpoint_meta(whole).weights_sha256
    assert losses(tmp_path / "stopped") == losses(tmp_path / "whole")


@pytest.mark.slow
def test_sigterm_to_the_whole_group_stops_a_reader_with_workers_and_keeps_its_state(
    synth_dir: Path, tmp_path: Path
) -> None:
    """As a scheduler ending a job does: SIGTERM to every process of the group, the loader workers
    included, once training has begun; the trainer exits with 143 and its state is whole."""
    cmd = [sys.executable, "-m", "training.reader", "--config", "fast", "--data", str(synth_dir)]
    cmd += ["--epochs", "50", "--batch-size", "2", "--size", "24", "--width", "4", "--workers", "2"]
    cmd += ["--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    code, log = sigterm_once_workers_run(cmd)
    assert code == 143, log[-3000:]
    assert "Traceback" not in log and ("stopped in epoch" in log or "stopped after epoch" in log)
    assert saved_progress(tmp_path / "state")["epoch"] == len(rows(tmp_path)) < 50


def test_resume_refuses_a_folder_without_state_and_other_flags(synth_dir: Path, tmp_path: Path) -> None:
    args = ["--config", "fast", "--data", str(synth_dir), *SMALL, "--width", "4", "--workers", "0"]
    with pytest.raises(ValueError, match="nothing to resume"):
        reader.main([*args, "--out", str(tmp_path / "never"), "--resume"])
    first = reader.main([*args, "--out", str(tmp_path / "run"), "--epochs", "1"])
    with pytest.raises(ValueError, match=r"--width 4 \(now 8\)"):
        reader.main([*args, "--out", str(tmp_path / "run"), "--resume", "--width", "8"])
    # The number of epochs sets the schedule: another one is refused too.
    with pytest.raises(ValueError, match=r"--epochs 1 \(now 2\)"):
        reader.main([*args, "--out", str(tmp_path / "run"), "--resume"])
    # Where and how it runs may change; a finished run resumed trains nothing and writes its reader.
    moved = (tmp_path / "run").rename(tmp_path / "moved")
    again = reader.main([*args, "--out", str(moved), "--epochs", "1", "--resume", "--workers", "1"])
    assert again.sha256 == first.sha256 and [r["epoch"] for r in rows(moved)] == [1]


def test_a_new_run_in_a_used_folder_starts_afresh_and_saves_its_start(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    generator = torch.Generator().manual_seed(5)
    state = FitState(tmp_path, model, optimizer, scheduler, generator, {"lr": "0.1"})
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    state.record([{"epoch": 1.0}])
    assert state.start(resume=False) == []
    assert (tmp_path / "metrics.jsonl").read_text() == "" and saved_progress(tmp_path / "state")["epoch"] == 0
    start = {k: v.clone() for k, v in model.state_dict().items()}
    drawn = torch.rand(3, generator=generator)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert state.start(resume=True) == []
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(3, generator=generator), drawn)  # the generator is back at its start


def test_recorded_flags_leave_out_what_may_change_on_resume() -> None:
    args = reader.parse_args(["--out", "x", "--workers", "3", "--device", "cpu", "--resume"])
    flags = recorded_flags(args)
    assert flags["epochs"] == "20" and flags["width"] == "32" and flags["seed"] == "0"
    assert not {"out", "workers", "device", "resume", "no_progress", "preload_images"} & set(flags)
