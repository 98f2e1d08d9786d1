"""Training a digit classifier on crops cut around the labelled boxes: the crop data set, one epoch,
the whole fit with its flags. Shared by `training.pretrain` (the detector's backbone as a classifier)
and `training.reader` (the reader, `models.reader`)."""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as nnf
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from models.boxes import BoxXYXY
from models.inference import resolve_device, to_unit_float
from models.reread import crop_square, crop_window
from training.config import TrainConfig, load_config
from training.data import ImageRecord, read_rgb, read_rgb_all
from training.fit import FitState, epoch_batches, recorded_flags, stopped_after_epoch, stopped_in_epoch
from training.interrupt import StopRequest, StopSafeLoader
from training.plots import plot_pretraining
from training.sampling import shuffled_draws
from training.train import load_splits, seed_everything
from training.transforms import AugmentConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropParams:
    """How crops are cut: a square of `context` x the box's longer side around its centre, resized to
    `size` px; in training the side is scaled by up to `scale_jitter` and the centre moved by up to
    `shift_jitter` x the side, and the colours jittered. The rest is off by default (the shipped
    reader's recipe): in training, with probability `low_res` the crop is shrunk to a random side
    between `low_res_min` x `size` and `size` and grown back (a blurred, far-away digit); it is rotated
    and sheared by up to `rotate` degrees each; with probability `erase` a rectangle of 2-10 % of it is
    blanked."""

    size: int = 48
    context: float = 1.3
    scale_jitter: float = 0.15
    shift_jitter: float = 0.08
    low_res: float = 0.0
    low_res_min: float = 0.4
    rotate: float = 0.0
    erase: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.low_res <= 1.0 and 0.0 <= self.erase <= 1.0):
            raise ValueError(f"low_res ({self.low_res}) and erase ({self.erase}) are probabilities")
        if not 0.0 < self.low_res_min <= 1.0 or self.rotate < 0.0:
            raise ValueError(
                f"low_res_min ({self.low_res_min}) must be in (0, 1], rotate ({self.rotate}) >= 0"
            )


def shrink_and_grow(crop: torch.Tensor, side: int) -> torch.Tensor:
    """`crop` FloatTensor[C, S, S] resized to `side` x `side` px (antialiased) and back to S x S
    (bilinear): the detail a digit `side` px wide would keep. `side` >= S returns `crop` itself."""
    size = crop.shape[-1]
    if side >= size:
        return crop
    small = nnf.interpolate(
        crop[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False
    )
    return nnf.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[0].clamp(0.0, 1.0)


class Draws(Protocol):
    """Where random numbers come from: `random.Random`, or the `random` module itself (seeded for each
    training crop by `training.sampling.KeyedDraws`)."""

    def random(self) -> float: ...
    def uniform(self, a: float, b: float) -> float: ...
    def randint(self, a: int, b: int) -> int: ...


def degrade(crop: torch.Tensor, params: CropParams, rng: Draws) -> torch.Tensor:
    """The training-only degradations of `params` (rotation and shear, low resolution, erasing), drawn
    from `rng`, applied to `crop` FloatTensor[C, S, S] in [0, 1]; the same shape comes back. With all
    of them off `crop` comes back unchanged."""
    if params.rotate > 0.0:
        angle = rng.uniform(-params.rotate, params.rotate)
        shear = rng.uniform(-params.rotate, params.rotate)
        crop = v2.functional.affine(
            crop, angle=angle, translate=[0, 0], scale=1.0, shear=[shear, 0.0],
            interpolation=v2.InterpolationMode.BILINEAR,
        )  # fmt: skip
    size = crop.shape[-1]
    if params.low_res > 0.0 and rng.random() < params.low_res:
        crop = shrink_and_grow(crop, rng.randint(max(1, round(params.low_res_min * size)), size))
    if params.erase > 0.0 and rng.random() < params.erase:
        area = rng.uniform(0.02, 0.10) * size * size
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        height = min(size, max(1, round(math.sqrt(area * aspect))))
        width = min(size, max(1, round(math.sqrt(area / aspect))))
        top, left = rng.randint(0, size - height), rng.randint(0, size - width)
        crop = crop.clone()
        crop[:, top : top + height, left : left + width] = rng.random()
    return crop


class DigitCrops(Dataset[tuple[torch.Tensor, int]]):
    """One item per labelled box, then one per `extra` item (image path, box [x1, y1, x2, y2] pixels,
    class): (crop FloatTensor[3, size, size], RGB in [0, 1], class: the digit 0-9, or whatever class
    the extra item gives, such as `models.reader.NOT_A_DIGIT`).

    Parts of a window outside the image are zero. `train=True` jitters window and colours, then
    degrades the crop as `params` say (`degrade`). With `preload`, every image is decoded once, here,
    and kept as ByteTensor[3, H, W] (~21 kB for a median HW2 image, ~0.2 GB for the training split;
    loader workers share them): decoding is most of the cost of a crop. `progress` shows a bar while
    preloading.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        params: CropParams,
        train: bool,
        extra: Sequence[tuple[Path, BoxXYXY, int]] = (),
        preload: bool = False,
        progress: bool = False,
    ) -> None:
        self.items = [(r.path, b.box_xyxy, b.digit) for r in records for b in r.boxes] + list(extra)
        self.params = params
        self.train = train
        self.images: dict[Path, torch.Tensor] = {}
        if preload:
            paths = sorted({path for path, _, _ in self.items})
            self.images = dict(zip(paths, read_rgb_all(paths, "preload images", progress), strict=True))
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
        stored = self.images[path] if path in self.images else read_rgb(path)
        image = to_unit_float(stored)  # as `load_image`
        crop = crop_square(image, crop_window(box, p.context, scale, shift), p.size)
        if self.train:
            crop = degrade(self.colour(crop), p, random)
        return crop, digit


LABEL_SMOOTHING = 0.1  # in training; evaluation scores plain cross-entropy


@dataclass(frozen=True)
class Distillation:
    """Learning from a trained classifier's soft labels as well as from the labels (Hinton et al.
    2015, "Distilling the knowledge in a neural network"): see `distillation_loss`. `teacher` maps the
    same crops to logits over the same classes."""

    teacher: nn.Module
    weight: float = 0.9
    temperature: float = 4.0


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    weight: float,
    temperature: float,
    label_smoothing: float = LABEL_SMOOTHING,
) -> torch.Tensor:
    """(1 - `weight`) x cross-entropy of `student` (logits FloatTensor[B, C]) with `labels`
    (LongTensor[B], smoothed by `label_smoothing`) + `weight` x `temperature`^2 x KL(teacher || student),
    both softened by `temperature` (`teacher`: logits FloatTensor[B, C]; the T^2 keeps the soft part's
    gradients the size of the hard part's whatever T). A scalar; `weight` 0 is plain cross-entropy."""
    if not 0.0 <= weight <= 1.0 or temperature <= 0:
        raise ValueError(f"distillation weight {weight} must be in [0, 1] and temperature {temperature} > 0")
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} but teacher logits {tuple(teacher.shape)}")
    hard = nnf.cross_entropy(student, labels, label_smoothing=label_smoothing)
    soft = nnf.kl_div(
        nnf.log_softmax(student / temperature, dim=1),
        nnf.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - weight) * hard + weight * temperature**2 * soft


def run_epoch(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, int]],
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    max_steps: int = 0,
    desc: str = "",
    show_progress: bool = True,
    distill: Distillation | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train (given an optimizer) or evaluate over `loader` (at most `max_steps` batches, 0 = all):
    mean `loss`, `accuracy`, `images_per_s`, and `steps` done. With `distill`, training minimises
    `distillation_loss` against its teacher; evaluation ignores it. `stop` is asked after each step
    but the last: when it says so the pass ends there."""
    training = optimizer is not None
    model.train(training)
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING if training else 0.0)
    if distill is not None:
        distill.teacher.eval()
    loss_sum = correct = seen = 0.0
    steps = 0
    limit = min(len(loader), max_steps or len(loader))
    start = time.perf_counter()
    bar = tqdm(loader, total=limit, desc=desc, disable=not show_progress, leave=False)
    with torch.set_grad_enabled(training):
        for images, labels in epoch_batches(bar, limit, stop):
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            if training and distill is not None:
                with torch.no_grad():
                    taught = distill.teacher(images)
                loss = distillation_loss(logits, taught, labels, distill.weight, distill.temperature)
            else:
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
            steps += 1
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    seen = max(seen, 1)
    return {
        "loss": loss_sum / seen,
        "accuracy": correct / seen,
        "images_per_s": seen / max(time.perf_counter() - start, 1e-9),
        "steps": steps,
    }


def add_crop_training_args(p: argparse.ArgumentParser, *, epochs: int, lr: float) -> None:
    """The flags of a tool that trains a classifier on digit crops (`fit_on_crops`)."""
    p.add_argument("--config", default="fast", help="preset or config file: its detector and data are used")
    p.add_argument("--data", help="data set root (overrides the config's)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up before the cosine")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--size", type=int, default=CropParams.size, help="crop side in pixels")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--preload-images",
        action="store_true",
        help="decode every image once, before training (~0.2 GB for HW2's training split): faster epochs",
    )
    p.add_argument("--max-steps", type=int, default=0, help="steps per epoch (0 = all); for smoke runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on from --out's state/, saved after each epoch (Ctrl-C or SIGTERM stops a run after its "
        "step and keeps its last whole epoch); give the same flags",
    )


def fit_on_crops(
    model: nn.Module,
    train_set: DigitCrops,
    valid_set: DigitCrops,
    args: argparse.Namespace,
    on_epoch: Callable[[list[dict[str, float]]], None],
    distill: Distillation | None = None,
) -> list[dict[str, float]]:
    """Train `model` (crops FloatTensor[B, 3, S, S] -> logits FloatTensor[B, 10]) with SGD and a
    cosine schedule (after `args.warmup_steps` of linear warm-up), from `distill`'s teacher too when
    given (moved to the model's device); after each epoch, score the validation crops, write the rows
    so far to `args.out`/metrics.jsonl, draw `args.out`/pretraining.png, save the state for
    `--resume` (`training.fit`) and call `on_epoch(history)`. With `args.resume` it goes on from that
    state. Returns the history; raises `RunStoppedError` when Ctrl-C or SIGTERM stops it first."""
    device = resolve_device(args.device)
    generator = seed_everything(args.seed)
    keyed, order = shuffled_draws(train_set, args.seed)  # the photos' draws and order
    common: dict[str, Any] = {"batch_size": args.batch_size, "num_workers": args.workers}
    train_loader: StopSafeLoader[Any] = StopSafeLoader(
        keyed, sampler=order,
        drop_last=True, generator=generator, **common,
    )  # fmt: skip
    valid_loader: StopSafeLoader[Any] = StopSafeLoader(valid_set, **common)
    model.to(device)
    if distill is not None:
        distill.teacher.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    per_epoch = min(len(train_loader), args.max_steps or len(train_loader))
    steps = per_epoch * args.epochs
    warmup = max(args.warmup_steps, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    state = FitState(args.out, model, optimizer, scheduler, generator, recorded_flags(args))
    history = state.start(resume=args.resume)
    show = not args.no_progress
    with StopRequest() as stop, closing(train_loader), closing(valid_loader):
        for epoch in range(len(history) + 1, args.epochs + 1):
            order.set_epoch(epoch)
            stats = run_epoch(
                model, train_loader, device, optimizer, scheduler, max_steps=args.max_steps,
                desc=f"crops {epoch}", show_progress=show, distill=distill, stop=stop,
            )  # fmt: skip
            if stats["steps"] < per_epoch:
                raise stopped_in_epoch(args.out, stop, epoch, int(stats["steps"]), per_epoch)
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
            state.end_epoch(history, row, lambda rows: plot_pretraining(rows, args.out / "pretraining.png"))
            on_epoch(history)
            if stop.requested and epoch < args.epochs:
                raise stopped_after_epoch(args.out, stop, epoch)
    return history


def add_degradation_args(p: argparse.ArgumentParser) -> None:
    """The flags of `CropParams`' training degradations, for a tool whose crops come from `crop_sets`
    (the refiner cuts its own, so it has none of them)."""
    p.add_argument(
        "--low-res",
        type=float,
        default=CropParams.low_res,
        help="share of training crops shrunk and grown back",
    )
    p.add_argument(
        "--low-res-min",
        type=float,
        default=CropParams.low_res_min,
        help="with --low-res: the smallest side / size",
    )
    p.add_argument(
        "--rotate", type=float, default=CropParams.rotate, help="training rotation and shear, degrees"
    )
    p.add_argument(
        "--erase", type=float, default=CropParams.erase, help="share of training crops partly blanked"
    )


def crop_params(args: argparse.Namespace) -> CropParams:
    """The crop settings of `add_crop_training_args`' and `add_degradation_args`' flags."""
    return CropParams(
        size=args.size,
        low_res=args.low_res,
        low_res_min=args.low_res_min,
        rotate=args.rotate,
        erase=args.erase,
    )


def crop_sets(
    config: TrainConfig,
    params: CropParams,
    extra: Callable[[Sequence[ImageRecord]], Sequence[tuple[Path, BoxXYXY, int]]] | None = None,
    preload: bool = False,
    progress: bool = False,
) -> tuple[DigitCrops, DigitCrops, str]:
    """Training crops (jittered) and validation crops of the config's data, and the labels' fingerprint.
    `extra` maps the training records to more training items (image path, xyxy box, class); `preload`
    decodes the images up front (`DigitCrops`; `progress` shows it)."""
    train, valid, fingerprint = load_splits(config)
    more = extra(train) if extra else ()
    train_set = DigitCrops(train, params, train=True, extra=more, preload=preload, progress=progress)
    valid_set = DigitCrops(valid, params, train=False, preload=preload, progress=progress)
    log.info("crops: %d train (%d extra) / %d valid", len(train_set), len(more), len(valid_set))
    return train_set, valid_set, fingerprint


def load_crop_config(args: argparse.Namespace) -> TrainConfig:
    config = load_config(args.config)
    return replace(config, data=replace(config.data, root=args.data)) if args.data else config
