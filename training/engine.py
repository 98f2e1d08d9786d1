"""One training epoch, validation loss and batched prediction. Device-agnostic; float16 AMP on CUDA,
bfloat16 autocast on the CPU when asked (`cpu_bf16`)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from models.assembly import Detection
from models.zoom import ZoomParams, detect_with_zoom
from training.data import Target


def _to_device(
    images: list[torch.Tensor], targets: list[Target], device: torch.device
) -> tuple[list[torch.Tensor], list[Target]]:
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
    return images, targets


def autocast_dtype(device: torch.device, *, cuda_amp: bool, cpu_bf16: bool) -> torch.dtype | None:
    """The dtype the training step's forward autocasts to: float16 on CUDA with AMP, bfloat16 on the
    CPU when asked, else None (float32)."""
    if device.type == "cuda" and cuda_amp:
        return torch.float16
    if device.type == "cpu" and cpu_bf16:
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _limited(
    loader: Iterable[tuple[list[torch.Tensor], list[Target]]], max_steps: int
) -> Iterator[tuple[list[torch.Tensor], list[Target]]]:
    for step, batch in enumerate(loader):
        if max_steps and step >= max_steps:
            return
        yield batch


@dataclass
class EpochProgress:
    """Sums over the steps of one epoch so far; a run stopped mid-epoch saves it, and the resumed
    epoch adds to it, so the epoch's means cover all its steps."""

    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)  # loss component -> sum over steps

    def add(self, losses: dict[str, float], images: int) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1
        self.images += images

    def means(self) -> dict[str, float]:
        """Mean loss per component and `loss`, and `images_per_s` over the time spent training."""
        means = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        means["images_per_s"] = self.images / max(self.seconds, 1e-9)
        return means

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "images": self.images, "seconds": self.seconds, "sums": dict(self.sums)}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> EpochProgress:
        return cls(int(saved["steps"]), int(saved["images"]), float(saved["seconds"]), dict(saved["sums"]))


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, Target]],
    device: torch.device,
    *,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    max_steps: int = 0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    show_progress: bool = True,
    cpu_bf16: bool = False,
    progress: EpochProgress | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train for one pass over `loader` (at most `max_steps` steps in the epoch, 0 = all). Returns mean
    losses per component, `loss`, `images_per_s`. The forward autocasts to float16 on CUDA when
    `scaler` is given, to bfloat16 on the CPU when `cpu_bf16` (`autocast_dtype`); losses, gradients
    and weights stay float32.

    `progress` holds the epoch's steps so far: a resumed epoch passes the saved one (and a loader
    that leaves out the batches it covered), and it is updated in place. `stop` is asked after every
    step; when it says so the pass ends early, and `progress.steps` tells how far it got."""
    dtype = autocast_dtype(device, cuda_amp=scaler is not None, cpu_bf16=cpu_bf16)
    model.train()
    hold_frozen_batchnorm(model)
    progress = progress if progress is not None else EpochProgress()
    done = progress.steps
    total = done + len(loader)
    if max_steps:
        total = min(total, max_steps)
    start = time.perf_counter()
    bar = tqdm(
        _limited(loader, total - done) if total > done else iter(()),
        initial=done,
        total=total,
        desc=f"epoch {epoch}",
        disable=not show_progress,
        leave=False,
        dynamic_ncols=True,
    )
    for images, targets in bar:
        images, targets = _to_device(images, targets, device)
        with _autocast(device, dtype):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {epoch} step {progress.steps}: {loss_dict}"
            )
        optimizer.zero_grad(set_to_none=True)
        _backward_step(loss, model, optimizer, scaler, grad_clip)
        if scheduler is not None:  # per-step schedule
            scheduler.step()
        progress.add({**{k: v.item() for k, v in loss_dict.items()}, "loss": loss.item()}, len(images))
        seconds = progress.seconds + time.perf_counter() - start
        bar.set_postfix(
            loss=f"{progress.sums['loss'] / progress.steps:.3f}", img_s=f"{progress.images / seconds:.1f}"
        )
        # Not at the last step: the pass ends there by itself, and `_limited` fetching (and drawing
        # augmentations for) the batch past the limit keeps the random draws of a run never stopped.
        if stop is not None and stop() and progress.steps < total:
            break
    progress.seconds += time.perf_counter() - start
    return progress.means()


def _backward_step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float,
) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def hold_frozen_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm whose scale does not train (`requires_grad` False: a frozen part, see
    `training.train.freeze`) in eval mode, so that training normalises with, and keeps, the running
    statistics it was loaded with; call after `model.train()`. Returns how many were held."""
    held = 0
    for module in model.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None
        if is_norm and not module.weight.requires_grad:
            module.eval()
            held += 1
    return held


@contextlib.contextmanager
def loss_mode(model: nn.Module) -> Iterator[None]:
    """Training-mode forward (so the model returns losses) with BatchNorm frozen and no gradients:
    measuring validation loss must not change running statistics."""
    was_training = model.training
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def validation_loss(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, Target]],
    device: torch.device,
    max_steps: int = 0,
    show_progress: bool = True,
) -> float:
    """Mean total detection loss over `loader` (RPN + ROI losses, as in training)."""
    total, steps = 0.0, 0
    with loss_mode(model):
        for images, targets in tqdm(
            _limited(loader, max_steps), desc="val loss", disable=not show_progress, leave=False
        ):
            images, targets = _to_device(images, targets, device)
            total += float(sum(model(images, targets).values()))
            steps += 1
    return total / max(steps, 1)


@torch.inference_mode()
def predict(
    model: FasterRCNN,
    loader: DataLoader[tuple[torch.Tensor, Target]],
    device: torch.device,
    show_progress: bool = True,
    desc: str = "predict",
    zoom: ZoomParams | None = None,
) -> dict[int, list[Detection]]:
    """Run the detector over `loader`, with the second look at small numbers when `zoom` is on (as the
    service does). Returns image_id -> detections (xyxy in original-image pixels)."""
    model.eval()
    results: dict[int, list[Detection]] = {}
    for images, targets in tqdm(loader, desc=desc, disable=not show_progress, leave=False):
        detections = detect_with_zoom(model, [img.to(device) for img in images], zoom or ZoomParams())
        for target, found in zip(targets, detections, strict=True):
            results[int(target["image_id"])] = found
    return results
