"""What a detector training run does around each epoch (`training.train.main` runs them in turn):
train it, validate, write its checkpoints and its row of metrics.jsonl, save the state to resume from;
and the final evaluation of best/.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from models.atomic import staged_folder
from models.checkpoint import load_checkpoint, save_checkpoint, update_checkpoint_metrics
from training.config import TrainConfig
from training.data import DigitDataset, ImageRecord, collate
from training.distributed import DistInfo, barrier
from training.engine import EpochProgress, predict, train_one_epoch, validation_loss
from training.evaluate import score_detections, write_predictions, write_report
from training.interrupt import StopRequest
from training.plots import plot_loss_curves
from training.sampling import EpochKeys, EpochShuffle
from training.state import load_train_state, save_train_state, saved_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Training:
    """One run's parts: `model` (`net` is what trains: the model, or its DistributedDataParallel
    wrapper under torchrun), its optimiser, schedule and grad scaler (None without CUDA AMP), the
    loaders, the validation records, the data fingerprint, `steps` per epoch, where the run is written
    and whether to show progress bars."""

    config: TrainConfig
    device: torch.device
    dist: DistInfo
    run_dir: Path
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    train_loader: DataLoader[Any]
    valid_loader: DataLoader[Any]
    valid: list[ImageRecord]
    fingerprint: str
    steps: int
    show: bool


def train_epoch(
    run: Training, epoch: int, progress: dict[str, Any], stop: StopRequest
) -> dict[str, Any] | None:
    """Train `epoch` (from where `progress`' partial epoch stopped, if it is this one), then on the
    main process validate and record it (`record_epoch`) and save the state; returns the run's
    progress, or None when `stop` ended the epoch early (its state saved to go on from that step)."""
    done = start_epoch(run.train_loader, epoch, progress.pop("partial", None))
    stats = train_one_epoch(
        run.net,
        run.optimizer,
        run.train_loader,
        run.device,
        epoch=epoch,
        scaler=run.scaler,
        grad_clip=run.config.grad_clip,
        max_steps=run.config.max_steps_per_epoch,
        scheduler=run.scheduler,
        show_progress=run.show,
        cpu_bf16=run.config.cpu_bf16,
        progress=done,
        stop=stop,
    )
    if stop.requested and done.steps < run.steps:  # mid-epoch: save where it got to
        partial = {**progress, "partial": {"epoch": epoch, **done.to_dict()}}
        save_train_state(run.run_dir / "state", run.optimizer, run.scheduler, run.scaler, partial, run.model)
        log.warning("stopped in epoch %d after step %d of %d", epoch, done.steps, run.steps)
        return None
    if run.dist.is_main:
        row = {
            "epoch": epoch,
            "lr": run.optimizer.param_groups[0]["lr"],
            **{f"train_{k}" if k != "images_per_s" else k: v for k, v in stats.items()},
            **validate(run.model, run.valid_loader, run.valid, run.config, run.device, epoch, run.show),
        }
        progress = record_epoch(row, progress, run.run_dir, run.config, run.fingerprint, run.model)
        save_train_state(run.run_dir / "state", run.optimizer, run.scheduler, run.scaler, progress, run.model)
    barrier(run.dist)
    return progress


def validate(
    model: nn.Module,
    loader: DataLoader[Any],
    valid: list[ImageRecord],
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    show: bool,
) -> dict[str, Any]:
    """Validation loss every epoch; mAP and number accuracy every `eval_every` epochs and the last."""
    result: dict[str, Any] = {"val_loss": validation_loss(model, loader, device, show_progress=show)}
    if epoch % config.eval_every == 0 or epoch == config.epochs:
        scores = score_detections(valid, predict(model, loader, device, show, "val mAP"), config.assembly)
        result.update(
            {"val_map": scores["map"], "val_map50": scores["map50"], "val_accuracy": scores["accuracy"]}
        )
    return result


def save_epoch(
    model: nn.Module, run_dir: Path, config: TrainConfig, fingerprint: str, row: dict[str, Any], is_best: bool
) -> None:
    """Checkpoint `model` after the epoch `row` describes as last/, as epochs/NNN/ too with
    `keep_epochs`, and as best/ when `is_best`; each records the config, data fingerprint and row."""
    kwargs: dict[str, Any] = {
        "assembly": config.assembly,
        "training": config.to_dict(),
        "data_fingerprint": fingerprint,
        "metrics": row,
        "dtype": config.save_dtype,
    }
    folders = [run_dir / "last"]
    if config.keep_epochs:
        folders.append(run_dir / "epochs" / f"{row['epoch']:03d}")
    if is_best:
        folders.append(run_dir / "best")
    for folder in folders:
        with staged_folder(folder) as staging:  # a run stopped here keeps the last epoch's checkpoint
            save_checkpoint(staging, model, config.detector, **kwargs)


def record_epoch(
    row: dict[str, Any],
    progress: dict[str, Any],
    run_dir: Path,
    config: TrainConfig,
    fingerprint: str,
    model: nn.Module,
) -> dict[str, Any]:
    """Checkpoints, metrics.jsonl and loss curves for a finished epoch; returns the run's progress."""
    score = row["val_map"] if "val_map" in row else -row["val_loss"]
    is_best = score > progress["best"] or not (run_dir / "best").exists()
    progress = {
        "epoch": row["epoch"],
        "history": [*progress["history"], row],
        "best": max(score, progress["best"]),
    }
    save_epoch(model, run_dir, config, fingerprint, row, is_best)
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    plot_loss_curves(progress["history"], run_dir / "loss_curves.png")
    log.info("epoch %d: %s", row["epoch"], {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
    return progress


def resume_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Load a run's weights and training state to go on where it stopped; returns its progress."""
    if not saved_progress(run_dir / "state")["has_model"]:  # an older run's state: weights in last/
        model.load_state_dict(load_checkpoint(run_dir / "last")[0].state_dict())
    progress = load_train_state(run_dir / "state", optimizer, scheduler, scaler, model)
    partial = progress.get("partial")
    if partial:
        log.info("resuming %s in epoch %d after step %d", run_dir, partial["epoch"], partial["steps"])
    else:
        log.info("resuming %s after epoch %d", run_dir, progress["epoch"])
    return progress


def start_epoch(loader: DataLoader[Any], epoch: int, partial: dict[str, Any] | None) -> EpochProgress:
    """Set the loader's sampler to `epoch`, past the batches already trained on where `partial` (a
    stopped epoch's saved progress) is this epoch's; returns the epoch's progress so far."""
    done = EpochProgress.from_dict(partial) if partial and partial["epoch"] == epoch else EpochProgress()
    sampler = loader.sampler
    if isinstance(sampler, EpochKeys | EpochShuffle):
        sampler.set_epoch(epoch, skip=done.steps * (loader.batch_size or 1))
    return done


def final_evaluation(
    run_dir: Path, valid: list[ImageRecord], config: TrainConfig, device: torch.device
) -> None:
    """Evaluate best/ on the whole validation split into eval/ and record the figures in the checkpoint."""
    model, _ = load_checkpoint(run_dir / "best", device)
    loader = DataLoader(DigitDataset(valid), batch_size=config.batch_size, collate_fn=collate)
    detections = predict(model, loader, device, desc="final evaluation")
    write_predictions(run_dir / "eval", valid, detections, config.assembly)
    metrics = write_report(run_dir / "eval", valid, detections, config.assembly)
    update_checkpoint_metrics(run_dir / "best", {"valid": metrics})
