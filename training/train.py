"""Train a digit detector and write self-describing checkpoints.

    python -m training.train --config seed --data ../shared/data/svhn-hw2
    python -m training.train --config configs/fast.yaml --epochs 2 --max-steps 20
    python -m training.train --resume runs/<run>            # continue where a run stopped
    torchrun --nproc_per_node=4 -m training.train --config seed   # several GPUs

A run folder holds config.json, metrics.jsonl, loss_curves.png, best/ and last/ checkpoints (and
epochs/NNN/ for every epoch with `keep_epochs`), state/ for --resume, and eval/ with the final
evaluation of best/ on the validation split.

Ctrl-C or SIGTERM stops a run after the step it is on and saves state/ there, mid-epoch included, and
exits with 130 or 143 (`main` raises `training.interrupt.RunStoppedError`);
`--resume` goes on from that step with the same order of photos (`training.sampling`), and on one
process, without DataLoader workers, to the same weights as a run never stopped. (Under torchrun the
signals stop the run as before, and it resumes from its last whole epoch.)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.models import resnet
from torchvision.models.detection import FasterRCNN

from models.checkpoint import load_checkpoint, save_checkpoint, update_checkpoint_metrics
from models.detector import build_detector
from models.inference import resolve_device
from training.config import TrainConfig, config_from_dict, load_config, write_config
from training.data import (
    DigitDataset,
    ImageRecord,
    collate,
    data_fingerprint,
    load_coco_split,
    train_split_files,
)
from training.distributed import DistInfo, barrier, init_distributed, shutdown
from training.engine import EpochProgress, predict, train_one_epoch, validation_loss
from training.evaluate import score_detections, write_predictions, write_report
from training.exits import run_tool
from training.interrupt import RunStoppedError, StopRequest, StopSafeLoader
from training.mosaic import MosaicDataset
from training.plots import plot_loss_curves
from training.sampling import EpochShuffle
from training.state import load_train_state, save_train_state, saved_progress
from training.transforms import TrainTransforms

log = logging.getLogger("training.train")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="seed", help="preset name (seed, fast) or YAML/JSON file")
    p.add_argument("--resume", type=Path, help="run folder to continue (its config.json is used)")
    p.add_argument("--data", help="data set root (HW2 layout)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--max-steps", type=int, help="cap steps per epoch (smoke runs)")
    p.add_argument("--max-valid-images", type=int)
    p.add_argument("--freeze-backbone", action="store_true", default=None)
    p.add_argument(
        "--cpu-bf16", action="store_true", default=None, help="bfloat16 autocast on the CPU (fast with AMX)"
    )
    p.add_argument("--init-from", help="checkpoint to start from")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="folder for run folders (default runs/)")
    p.add_argument("--name", help="run folder name (default: time stamp)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Preset/file, or the resumed run's config, with command-line overrides on top."""
    if args.resume:
        config = config_from_dict(json.loads((args.resume / "config.json").read_text()))
    else:
        config = load_config(args.config)
    flat = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "lr": args.lr,
        "device": args.device,
        "max_steps_per_epoch": args.max_steps,
        "seed": args.seed,
        "max_valid_images": args.max_valid_images,
        "freeze_backbone": args.freeze_backbone,
        "cpu_bf16": args.cpu_bf16,
        "init_from": args.init_from,
        "out_dir": args.out,
        "run_name": args.name,
    }
    config = replace(config, **{k: v for k, v in flat.items() if v is not None})
    if args.data:
        config = replace(config, data=replace(config.data, root=args.data))
    return config


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def annotation_path(root: Path, name: str) -> Path:
    """A training annotation file: under the data root when it is there, else as given (e.g. a vetted
    or completed copy written under runs/ by `training.vet` or `training.complete`) when that is
    there; where neither is, the path under the root, for the error to name."""
    under_root, given = root / name, Path(name)
    return given if not under_root.is_file() and given.is_file() else under_root


def train_sources(config: TrainConfig) -> list[tuple[Path, Path]]:
    """(image folder, annotation file) of every training source: the main json, the extra jsons over
    the same images, then each extra root's training split (`train/` + `train.json`, or the COCO 2017
    layout's `images/train2017/` + `annotations/instances_train2017.json`)."""
    root = Path(config.data.root)
    images = root / config.data.train_images
    own = [
        (images, annotation_path(root, f)) for f in (config.data.train_json, *config.data.extra_train_json)
    ]
    return own + [train_split_files(r) for r in config.data.extra_train_roots]


def train_annotation_files(config: TrainConfig) -> list[Path]:
    """The training annotation files, in the order of `train_sources`."""
    return [ann for _, ann in train_sources(config)]


def load_train_records(config: TrainConfig) -> list[ImageRecord]:
    """Training records of every source of `train_sources`, in that order."""
    return [record for images, ann in train_sources(config) for record in load_coco_split(images, ann)[0]]


def load_splits(config: TrainConfig) -> tuple[list[ImageRecord], list[ImageRecord], str]:
    """Training records (main json plus extras), validation records and the labels' fingerprint."""
    root = Path(config.data.root)
    train_files = train_annotation_files(config)
    train = load_train_records(config)
    valid_json = root / config.data.valid_json
    valid = load_coco_split(root / config.data.valid_images, valid_json)[0]
    if config.max_valid_images:
        valid = valid[: config.max_valid_images]
    return train, valid, data_fingerprint([*train_files, valid_json])


def make_loaders(
    config: TrainConfig,
    train: list[ImageRecord],
    valid: list[ImageRecord],
    dist: DistInfo,
    generator: torch.Generator,
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    transforms = TrainTransforms(config.augment)
    train_set = (
        MosaicDataset(train, transforms, config.augment.mosaic_p)
        if config.augment.mosaic_p > 0
        else DigitDataset(train, transforms)
    )
    sampler: DistributedSampler[Any] | EpochShuffle = (
        DistributedSampler(train_set, seed=config.seed)
        if dist.enabled
        else EpochShuffle(len(train_set), config.seed)
    )
    common: dict[str, Any] = {
        "num_workers": config.workers,
        "collate_fn": collate,
        "persistent_workers": config.workers > 0,
        "worker_init_fn": _seed_worker,
    }
    train_loader: DataLoader[Any] = StopSafeLoader(
        train_set,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=len(train_set) > config.batch_size,
        generator=generator,
        **common,
    )
    valid_loader: DataLoader[Any] = StopSafeLoader(
        DigitDataset(valid), batch_size=config.batch_size, **common
    )
    return train_loader, valid_loader


def identity_new_blocks(model: FasterRCNN, loaded: set[str]) -> list[str]:
    """Make every backbone residual block none of whose tensors are in `loaded` (state-dict keys of
    `model`) start as the identity, and return their names (e.g. ["layer1.2", "layer3.5"]).

    A block adds its residual branch to its input; with the branch's last BatchNorm scale and shift
    at zero the branch adds nothing, and the ReLU after the sum leaves the (already non-negative)
    input unchanged. So a ResNet-34 detector started from a ResNet-18 one's weights (the same stage
    widths, stage by stage its first blocks) computes the same detections until training moves the
    zeroed scales off zero; they get gradients, so the blocks learn. Blocks that change the shape
    (a `downsample` branch) cannot be an identity and raise ValueError.
    """
    new = [
        (name, module)
        for name, module in model.backbone.body.named_modules()
        if isinstance(module, resnet.BasicBlock | resnet.Bottleneck)
        and not any(key.startswith(f"backbone.body.{name}.") for key in loaded)
    ]
    for name, module in new:
        if module.downsample is not None:
            raise ValueError(f"block {name} changes its input's shape: it cannot start as the identity")
    for _, module in new:
        last = module.bn2 if isinstance(module, resnet.BasicBlock) else module.bn3
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
    return [name for name, _ in new]


def build_model(config: TrainConfig, device: torch.device, *, initialise: bool = True) -> FasterRCNN:
    """The detector of the config, optionally started from another checkpoint (blocks the source
    lacks random or the identity, `config.new_blocks`; its weights' sha256 checked against
    `config.init_sha256` when that is set), backbone optionally frozen. `initialise=False` skips
    `init_from` (a resumed run loads its own weights over it, so the start need no longer exist)."""
    model = build_detector(config.detector)
    if config.init_from and initialise:
        source, meta = load_checkpoint(config.init_from)
        if config.init_sha256 and meta.weights_sha256 != config.init_sha256:
            raise ValueError(
                f"init_from {config.init_from} holds weights with sha256 {meta.weights_sha256}, not the "
                f"{config.init_sha256} the config's init_sha256 asks for: put the intended checkpoint "
                "there (the config's header says where it comes from)"
            )
        own = model.state_dict()
        fitting = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(fitting, strict=False)
        log.info("initialised %d/%d tensors from %s", len(fitting), len(own), config.init_from)
        if config.new_blocks == "identity":
            started = identity_new_blocks(model, set(fitting))
            log.info("%d new residual blocks start as the identity: %s", len(started), ", ".join(started))
    prefixes = (("backbone.body",) if config.freeze_backbone else ()) + tuple(config.freeze)
    if prefixes:
        frozen = freeze(model, prefixes)
        total = sum(1 for _ in model.parameters())
        log.info("frozen: %d of %d parameter tensors (%s)", len(frozen), total, ", ".join(prefixes))
    return model.to(device)


def freeze(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Stop every parameter whose name starts with one of `prefixes` (a module name, e.g. "rpn" or
    "backbone.body", matched whole: "rpn" is not "rpnx") from training. Returns the names frozen.

    Their BatchNorm statistics stay as loaded too: `training.engine.train_one_epoch` holds a
    BatchNorm whose weights do not train in eval mode. A prefix that names no parameter raises
    ValueError: a typo must not quietly train the whole detector.
    """
    frozen: list[str] = []
    for prefix in prefixes:
        hits = [
            (name, parameter)
            for name, parameter in model.named_parameters()
            if name == prefix or name.startswith(prefix + ".")
        ]
        if not hits:
            raise ValueError(f"freeze: no parameter of the detector is under {prefix!r}")
        for name, parameter in hits:
            parameter.requires_grad_(False)
            frozen.append(name)
    return list(dict.fromkeys(frozen))  # "backbone" and "backbone.body" together name each once


def make_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warm-up times the seed's per-epoch cosine (eta_min 0, period 2*T_max),
    or times a cosine that falls from 1 to `cyclic_min_ratio` within every epoch ("cyclic")."""
    per_epoch = max(steps_per_epoch, 1)
    low = config.cyclic_min_ratio

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        if config.schedule == "cyclic":
            phase = (step % per_epoch) / max(per_epoch - 1, 1)
            return warm * (low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * phase)))
        epoch = step // per_epoch
        return warm * 0.5 * (1.0 + math.cos(math.pi * epoch / config.cosine_t_max))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_run_dir(config: TrainConfig, resume: Path | None, *, create: bool = True) -> Path:
    """The run folder: `resume`, else `out_dir/run_name` (a time stamp when the run has no name).

    With `create` it is made and `out_dir/latest` points at it. Under torchrun only the main process
    creates (the others write nothing there, so the path they get for an unnamed run may carry
    another second's time stamp): two processes replacing one link race, and the loser fails with
    FileExistsError.
    """
    if resume:
        return resume
    name = config.run_name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.out_dir) / name
    if not create:
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = Path(config.out_dir) / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(name)
    return run_dir


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
    kwargs: dict[str, Any] = {
        "assembly": config.assembly,
        "training": config.to_dict(),
        "data_fingerprint": fingerprint,
        "metrics": row,
        "dtype": config.save_dtype,
    }
    save_checkpoint(run_dir / "last", model, config.detector, **kwargs)
    if config.keep_epochs:
        save_checkpoint(run_dir / "epochs" / f"{row['epoch']:03d}", model, config.detector, **kwargs)
    if is_best:
        save_checkpoint(run_dir / "best", model, config.detector, **kwargs)


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
    if isinstance(sampler, EpochShuffle):
        sampler.set_epoch(epoch, skip=done.steps * (loader.batch_size or 1))
    elif isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
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


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = resolve_config(args)
    dist = init_distributed(config.device)
    device = resolve_device(config.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cpu":
        log.warning("training on CPU: expect a slow run (use a CUDA GPU for the seed recipe)")
    generator = seed_everything(config.seed + dist.rank)
    train, valid, fingerprint = load_splits(config)
    log.info("data: %d train / %d valid images, fingerprint %s", len(train), len(valid), fingerprint[:12])
    train_loader, valid_loader = make_loaders(config, train, valid, dist, generator)
    model = build_model(config, device, initialise=not args.resume)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    steps = min(len(train_loader), config.max_steps_per_epoch or len(train_loader))
    scheduler = make_schedule(optimizer, config, steps)
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    run_dir = make_run_dir(config, args.resume, create=dist.is_main)
    progress: dict[str, Any] = {"epoch": 0, "history": [], "best": -math.inf}
    if args.resume:
        progress = resume_state(run_dir, model, optimizer, scheduler, scaler)
    if dist.is_main:
        write_config(config, run_dir / "config.json")
    net: nn.Module = model
    if dist.enabled:
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    show = not args.no_progress and dist.is_main
    stop = StopRequest(enabled=not dist.enabled)
    with stop:
        for epoch in range(progress["epoch"] + 1, config.epochs + 1):
            done = start_epoch(train_loader, epoch, progress.pop("partial", None))
            stats = train_one_epoch(
                net,
                optimizer,
                train_loader,
                device,
                epoch=epoch,
                scaler=scaler,
                grad_clip=config.grad_clip,
                max_steps=config.max_steps_per_epoch,
                scheduler=scheduler,
                show_progress=show,
                cpu_bf16=config.cpu_bf16,
                progress=done,
                stop=stop,
            )
            if stop.requested and done.steps < steps:  # mid-epoch: save where it got to
                partial = {**progress, "partial": {"epoch": epoch, **done.to_dict()}}
                save_train_state(run_dir / "state", optimizer, scheduler, scaler, partial, model)
                log.warning("stopped in epoch %d after step %d of %d", epoch, done.steps, steps)
                break
            if dist.is_main:
                row = {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    **{f"train_{k}" if k != "images_per_s" else k: v for k, v in stats.items()},
                    **validate(model, valid_loader, valid, config, device, epoch, show),
                }
                progress = record_epoch(row, progress, run_dir, config, fingerprint, model)
                save_train_state(run_dir / "state", optimizer, scheduler, scaler, progress, model)
            barrier(dist)
            if stop.requested:
                log.warning("stopped after epoch %d, before the final evaluation", epoch)
                break
    if stop.requested:
        shutdown(dist)
        log.warning("to go on: python -m training.train --resume %s", run_dir)
        raise RunStoppedError(run_dir, stop.signum or signal.SIGTERM)
    if dist.is_main and progress["history"]:
        final_evaluation(run_dir, valid, config, device)
        log.info("run folder: %s", run_dir)
    shutdown(dist)
    return run_dir


if __name__ == "__main__":
    run_tool(main)
