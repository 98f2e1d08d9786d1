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
`--resume` goes on from that step with the same photos in the same order and with the same random
augmentations (`training.sampling`), so on one process it ends with the same weights as a run never
stopped, with or without DataLoader workers. (Under torchrun the signals stop the run as before, and
it resumes from its last whole epoch.)
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
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torchvision.models import resnet
from torchvision.models.detection import FasterRCNN

from models.checkpoint import load_checkpoint
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
from training.distributed import DistInfo, init_distributed, shutdown
from training.epochs import Training, final_evaluation, resume_state, train_epoch
from training.exits import run_tool
from training.interrupt import RunStoppedError, StopRequest, StopSafeLoader
from training.mosaic import MosaicDataset
from training.sampling import EpochKeys, EpochShuffle, KeyedDraws
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
) -> tuple[StopSafeLoader[Any], StopSafeLoader[Any]]:
    transforms = TrainTransforms(config.augment)
    train_set = (
        MosaicDataset(train, transforms, config.augment.mosaic_p)
        if config.augment.mosaic_p > 0
        else DigitDataset(train, transforms)
    )
    sampler = EpochKeys(
        DistributedSampler(train_set, seed=config.seed)
        if dist.enabled
        else EpochShuffle(len(train_set), config.seed)
    )
    common: dict[str, Any] = {
        "num_workers": config.workers,
        "collate_fn": collate,
        "persistent_workers": config.workers > 0,
    }
    train_loader: StopSafeLoader[Any] = StopSafeLoader(
        KeyedDraws(train_set, config.seed),
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=len(train_set) > config.batch_size,
        generator=generator,
        **common,
    )
    valid_loader: StopSafeLoader[Any] = StopSafeLoader(
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


def training_device(config: TrainConfig, dist: DistInfo) -> torch.device:
    """`config.device`, each process on its own GPU under torchrun; warns that the CPU is slow."""
    device = resolve_device(config.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cpu":
        log.warning("training on CPU: expect a slow run (use a CUDA GPU for the seed recipe)")
    return device


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay over the parameters left trainable (`freeze`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def distributed_net(model: nn.Module, device: torch.device, dist: DistInfo) -> nn.Module:
    """What trains: `model` itself on one process; under torchrun wrapped in DistributedDataParallel,
    with synchronised BatchNorm on GPUs."""
    if not dist.enabled:
        return model
    net = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = resolve_config(args)
    dist = init_distributed(config.device)
    device = training_device(config, dist)
    generator = seed_everything(config.seed + dist.rank)
    train, valid, fingerprint = load_splits(config)
    log.info("data: %d train / %d valid images, fingerprint %s", len(train), len(valid), fingerprint[:12])
    train_loader, valid_loader = make_loaders(config, train, valid, dist, generator)
    model = build_model(config, device, initialise=not args.resume)
    optimizer = make_optimizer(model, config)
    steps = min(len(train_loader), config.max_steps_per_epoch or len(train_loader))
    scheduler = make_schedule(optimizer, config, steps)
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    run_dir = make_run_dir(config, args.resume, create=dist.is_main)
    progress: dict[str, Any] = {"epoch": 0, "history": [], "best": -math.inf}
    if args.resume:
        progress = resume_state(run_dir, model, optimizer, scheduler, scaler)
    if dist.is_main:
        write_config(config, run_dir / "config.json")
    run = Training(
        config=config,
        device=device,
        dist=dist,
        run_dir=run_dir,
        model=model,
        net=distributed_net(model, device, dist),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        train_loader=train_loader,
        valid_loader=valid_loader,
        valid=valid,
        fingerprint=fingerprint,
        steps=steps,
        show=not args.no_progress and dist.is_main,
    )
    stop = StopRequest(enabled=not dist.enabled)
    with stop, closing(train_loader), closing(valid_loader):  # its workers end with the loop
        for epoch in range(progress["epoch"] + 1, config.epochs + 1):
            trained = train_epoch(run, epoch, progress, stop)
            if trained is None:  # stopped mid-epoch, its state saved
                break
            progress = trained
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
