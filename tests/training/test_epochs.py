"""training.epochs: what a detector run writes for each epoch, and where a resumed epoch starts."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from models import checkpoint
from models.checkpoint import load_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from training.config import TRAIN_PRESETS
from training.engine import EpochProgress
from training.epochs import record_epoch, save_epoch, start_epoch
from training.sampling import EpochShuffle


@pytest.mark.parametrize("keep", [True, False])
def test_save_epoch_keeps_every_epoch_only_when_asked(tmp_path: Path, keep: bool) -> None:
    config = replace(TRAIN_PRESETS["fast"], keep_epochs=keep)
    model = build_detector(DETECTOR_PRESETS["fast"])
    save_epoch(model, tmp_path, config, "fp", {"epoch": 3}, is_best=False)
    assert (tmp_path / "last" / "weights.safetensors").is_file()
    assert (tmp_path / "epochs" / "003" / "weights.safetensors").is_file() == keep


def test_a_save_that_fails_halfway_keeps_the_previous_epochs_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TRAIN_PRESETS["fast"]
    model = build_detector(DETECTOR_PRESETS["fast"])
    save_epoch(model, tmp_path, config, "fp", {"epoch": 1}, is_best=True)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)

    def full_disk(*_args: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "write_text", full_disk)  # the JSON, written after the weights
    with pytest.raises(OSError, match="No space"):
        save_epoch(model, tmp_path, config, "fp", {"epoch": 2}, is_best=True)
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert load_checkpoint(tmp_path / "last")[1].metrics["epoch"] == 1


def test_best_follows_map_where_measured_and_every_epoch_is_recorded(tmp_path: Path) -> None:
    config = TRAIN_PRESETS["fast"]
    model = build_detector(DETECTOR_PRESETS["fast"])
    progress = {"epoch": 0, "history": [], "best": -math.inf}
    rows = [
        {"epoch": 1, "val_loss": 2.0},  # no mAP: judged by -val_loss, best as the first
        {"epoch": 2, "val_loss": 1.0, "val_map": 0.30, "val_map50": 0.6, "val_accuracy": 0.5},
        {
            "epoch": 3,
            "val_loss": 0.5,
            "val_map": 0.20,
            "val_map50": 0.5,
            "val_accuracy": 0.4,
        },  # lower loss and mAP: not best
    ]
    best_epochs = []
    for row in rows:
        progress = record_epoch(row, progress, tmp_path, config, "fp", model)
        best = json.loads((tmp_path / "best" / "checkpoint.json").read_text())
        best_epochs.append(best["metrics"]["epoch"])
    assert best_epochs == [1, 2, 2]
    assert progress == {"epoch": 3, "history": rows, "best": 0.30}
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert (tmp_path / "loss_curves.png").is_file()


def test_a_resumed_epoch_skips_the_batches_it_trained_and_a_later_one_none() -> None:
    sampler = EpochShuffle(20, seed=1)
    loader = DataLoader(list(range(20)), batch_size=4, sampler=sampler)
    partial = {"epoch": 2, **EpochProgress(steps=3, images=12, seconds=1.0, sums={"loss": 3.0}).to_dict()}
    done = start_epoch(loader, 2, partial)
    assert done.steps == 3 and done.sums == {"loss": 3.0}
    second = sampler.order()
    assert [int(i) for batch in loader for i in batch] == second[12:]
    fresh = start_epoch(loader, 3, partial)  # the partial epoch was 2: epoch 3 starts whole
    assert fresh == EpochProgress()
    assert [int(i) for batch in loader for i in batch] == sampler.order() != second
