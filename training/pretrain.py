"""Pretrain the detector's backbone as a digit classifier on crops cut around the training boxes.

    python -m training.pretrain --config configs/fast.yaml --out runs/pretrain-crops --epochs 10

With no ImageNet weights, this is our substitute: the backbone first learns what digits look like from
every labelled box (tens of thousands of crops, cheap at 48 px), then detection training starts from it
via `init_from: runs/pretrain-crops/best`. The output is an ordinary detector checkpoint whose backbone
body holds the classifier's weights; the FPN and heads are freshly initialised.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from models.boxes import BoxXYXY
from models.checkpoint import save_checkpoint
from models.detector import build_detector
from models.inference import resolve_device
from training.config import load_config
from training.data import ImageRecord, load_image
from training.plots import plot_pretraining
from training.train import load_splits, seed_everything
from training.transforms import AugmentConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropParams:
    """How crops are cut: a square of `context` x the box's longer side around its centre, resized to
    `size` px; in training the side is scaled by up to `scale_jitter` and the centre moved by up to
    `shift_jitter` x the side."""

    size: int = 48
    context: float = 1.3
    scale_jitter: float = 0.15
    shift_jitter: float = 0.08


def crop_window(
    box: BoxXYXY, context: float, scale: float = 1.0, shift: tuple[float, float] = (0, 0)
) -> BoxXYXY:
    """The square [x1, y1, x2, y2] (pixels, may reach outside the image) cut around `box` ([x1, y1, x2,
    y2] pixels): side `context * scale * max(w, h)`, centre moved by `shift` x side."""
    x1, y1, x2, y2 = box
    side = context * scale * max(x2 - x1, y2 - y1, 1.0)
    cx = (x1 + x2) / 2 + shift[0] * side
    cy = (y1 + y2) / 2 + shift[1] * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


class DigitCrops(Dataset[tuple[torch.Tensor, int]]):
    """One item per labelled box: (crop FloatTensor[3, size, size], RGB in [0, 1], digit 0-9).

    Parts of a window outside the image are zero. `train=True` jitters window and colours.
    """

    def __init__(self, records: Sequence[ImageRecord], params: CropParams, train: bool) -> None:
        self.items = [(r.path, b.box_xyxy, b.digit) for r in records for b in r.boxes]
        self.params = params
        self.train = train
        seed = AugmentConfig()  # the detector recipe's colour jitter
        self.colour = v2.ColorJitter(
            brightness=seed.brightness, contrast=seed.contrast, saturation=seed.saturation
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, box, digit = self.items[index]
        p = self.params
        scale, shift = 1.0, (0.0, 0.0)
        if self.train:
            scale = 1.0 + random.uniform(-p.scale_jitter, p.scale_jitter)
            shift = (
                random.uniform(-p.shift_jitter, p.shift_jitter),
                random.uniform(-p.shift_jitter, p.shift_jitter),
            )
        x1, y1, x2, _ = crop_window(box, p.context, scale, shift)
        side = max(round(x2 - x1), 1)
        crop = F.resized_crop(
            load_image(path), round(y1), round(x1), side, side, [p.size, p.size], antialias=True
        )
        if self.train:
            crop = self.colour(crop)
        return crop, digit


class CropClassifier(nn.Module):
    """A detector's backbone body + global average pooling + a 10-way linear layer.

    Input FloatTensor[B, 3, S, S] RGB in [0, 1] (normalised here with the detector's mean/std);
    output logits FloatTensor[B, 10].
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, body: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        was_training = body.training
        body.eval()
        with torch.no_grad():
            channels = self._features(torch.zeros(1, 3, 64, 64)).shape[1]
        body.train(was_training)
        self.head = nn.Linear(channels, 10)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body((x - self.mean) / self.std)
        last = list(features.values())[-1] if isinstance(features, dict) else features
        return last.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))


def run_epoch(
    model: CropClassifier,
    loader: DataLoader[tuple[torch.Tensor, int]],
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    max_steps: int = 0,
    desc: str = "",
    show_progress: bool = True,
) -> dict[str, float]:
    """Train (given an optimizer) or evaluate over `loader`: mean `loss`, `accuracy`, `images_per_s`."""
    training = optimizer is not None
    model.train(training)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1 if training else 0.0)
    loss_sum = correct = seen = 0.0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not show_progress, leave=False)
    with torch.set_grad_enabled(training):
        for step, (images, labels) in enumerate(bar):
            if max_steps and step >= max_steps:
                break
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = criterion(logits, labels)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    seen = max(seen, 1)
    return {
        "loss": loss_sum / seen,
        "accuracy": correct / seen,
        "images_per_s": seen / max(time.perf_counter() - start, 1e-9),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="fast", help="preset or config file: its detector and data are used")
    p.add_argument("--data", help="data set root (overrides the config's)")
    p.add_argument("--out", required=True, type=Path, help="output folder (best/ checkpoint, metrics)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.02)  # 0.1 stalled at the class prior (0.18 after 4 epochs)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--size", type=int, default=CropParams.size, help="crop side in pixels")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=0, help="steps per epoch (0 = all); for smoke runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    if args.data:
        config = replace(config, data=replace(config.data, root=args.data))
    device = resolve_device(args.device)
    generator = seed_everything(args.seed)
    train, valid, fingerprint = load_splits(config)
    params = CropParams(size=args.size)
    train_set, valid_set = DigitCrops(train, params, train=True), DigitCrops(valid, params, train=False)
    log.info("crops: %d train / %d valid", len(train_set), len(valid_set))
    common: dict[str, Any] = {"batch_size": args.batch_size, "num_workers": args.workers}
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, generator=generator, **common)
    valid_loader = DataLoader(valid_set, **common)
    detector = build_detector(config.detector)
    model = CropClassifier(detector.backbone.body, config.detector.image_mean, config.detector.image_std)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    steps = min(len(train_loader), args.max_steps or len(train_loader)) * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    args.out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    best = -1.0
    show = not args.no_progress
    for epoch in range(1, args.epochs + 1):
        stats = run_epoch(
            model,
            train_loader,
            device,
            optimizer,
            scheduler,
            max_steps=args.max_steps,
            desc=f"pretrain {epoch}",
            show_progress=show,
        )
        val = run_epoch(
            model, valid_loader, device, max_steps=args.max_steps, desc="valid crops", show_progress=show
        )
        row = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": stats["loss"],
            "train_accuracy": stats["accuracy"],
            "images_per_s": stats["images_per_s"],
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
        }
        history.append(row)
        with (args.out / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        plot_pretraining(history, args.out / "pretraining.png")
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
        if val["accuracy"] > best:
            best = val["accuracy"]
            save_checkpoint(
                args.out / "best",
                detector,
                config.detector,
                assembly=config.assembly,
                training={"pretrain": {k: str(v) for k, v in vars(args).items()}, "crop": asdict(params)},
                data_fingerprint=fingerprint,
                metrics={"crop_pretraining": row},
            )
    log.info("best crop accuracy %.4f; checkpoint %s", best, args.out / "best")
    return args.out / "best"


if __name__ == "__main__":
    main()
