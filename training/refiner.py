"""Train the box refiner: the small network that moves each detected box's edges towards the
labelled box (`models.refiner`).

    python -m training.evaluate --checkpoint models/default --data ../shared/data/svhn-hw2 \
        --split train --no-reader --no-refiner --out runs/eval-train
    python -m training.refiner --config configs/fast96-warm8.yaml --out runs/refiner \
        --site-detections runs/eval-train/pred.json
    python -m training.export --checkpoint models/default --out models/default --refiner runs/refiner

It learns from boxes cut around every labelled box of the config's training data, moved and resized
at random the way the detector errs (`BoxJitter`, measured on the shipped detector), and, with
`--site-detections` (a detector's `pred.json` on the training split, as above), from that
detector's own boxes on a labelled digit (IoU >= 0.4). The target is
the labelled box (`models.refiner.box_deltas`). With `--fit-head --negatives`, the fit also learns
from boxes on no digit: the detector's boxes that overlap no label by IoU >= 0.4 and one box per
training image placed off its digits (`off_digit_box`); these teach the fit only (its target, the
IoU its moved box reaches with the nearest label, is low), not the deltas. After each epoch it is
scored on the validation split's labelled boxes, each jittered the same way every epoch: the mean
IoU with the label before and after refinement. The last epoch is written to `--out` as a refiner
folder; none is picked by its validation score.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from models.assembly import Detection
from models.atomic import staged_folder
from models.boxes import BoxXYXY, box_iou
from models.hw2 import read_pred_json
from models.inference import resolve_device, to_unit_float
from models.refiner import (
    DELTA_SCALE,
    BoxRefiner,
    RefineParams,
    RefinerMeta,
    box_deltas,
    crop_boxes,
    save_refiner,
    shift_box,
)
from training.crops import add_crop_training_args, load_crop_config
from training.data import ImageRecord, read_rgb_all
from training.exits import run_tool
from training.fit import FitState, epoch_batches, recorded_flags, stopped_after_epoch, stopped_in_epoch
from training.interrupt import StopRequest, StopSafeLoader
from training.plots import plot_refiner
from training.sampling import shuffled_draws
from training.train import load_splits, seed_everything
from training.transforms import AugmentConfig

log = logging.getLogger(__name__)
SMOOTH_L1_BETA = 0.2  # in DELTA_SCALE units: errors over 4 % of the box count linearly


@dataclass(frozen=True)
class BoxJitter:
    """How a labelled box is moved to make a training input: centre by N(0, `centre_x` x width) and
    N(0, `centre_y` x height), width x exp(N(`bias_w`, `log_w`)), height x exp(N(`bias_h`, `log_h`));
    redrawn until IoU with the label >= `min_iou` (10 tries, then the label itself). The defaults are
    the shipped detector's errors on the validation split (boxes at score >= 0.3, IoU >= 0.4 with a
    label), a little widened."""

    centre_x: float = 0.10
    centre_y: float = 0.06
    log_w: float = 0.20
    log_h: float = 0.13
    bias_w: float = 0.03
    bias_h: float = -0.03
    min_iou: float = 0.4

    def __call__(self, box: BoxXYXY, rng: random.Random) -> BoxXYXY:
        w, h = box[2] - box[0], box[3] - box[1]
        for _ in range(10):
            cx = (box[0] + box[2]) / 2 + rng.gauss(0.0, self.centre_x) * w
            cy = (box[1] + box[3]) / 2 + rng.gauss(0.0, self.centre_y) * h
            nw, nh = (
                w * math.exp(rng.gauss(self.bias_w, self.log_w)),
                h * math.exp(rng.gauss(self.bias_h, self.log_h)),
            )
            moved = (cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2)
            if box_iou(moved, box) >= self.min_iou:
                return moved
        return box


class RefineItem(NamedTuple):
    """One training or validation input: the image's index, the labelled box the deltas aim at, the
    start box (None: `BoxJitter` draws one from the label each time) and whether the start box is on
    that digit (False: a box on no digit; `label` is then the nearest labelled box, which only the
    fit's target uses)."""

    image: int
    label: BoxXYXY
    start: BoxXYXY | None = None
    on_digit: bool = True


class RefineCrops(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """One item per `RefineItem`: (crop FloatTensor[4, S, S] around the start box,
    `models.refiner.crop_boxes`'s (RGB in [0, 1] and the box channel; [3, S, S] without it), deltas
    FloatTensor[4] from it to the label, on_digit FloatTensor[] 1.0 or 0.0). Images are decoded once
    and kept as uint8. `train=True` draws a new jitter and colour each time (from `random` and torch's
    generator, which `training.sampling.KeyedDraws` seeds for each epoch and item); otherwise item i's
    jitter is the same every epoch."""

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        items: Sequence[RefineItem],
        params: RefineParams,
        jitter: BoxJitter,
        train: bool,
    ) -> None:
        self.images, self.items, self.params = images, [RefineItem(*i) for i in items], params
        self.jitter, self.train = jitter, train
        seed = AugmentConfig()
        self.colour = v2.ColorJitter(
            brightness=seed.brightness, contrast=seed.contrast, saturation=seed.saturation
        )

    def __len__(self) -> int:
        return len(self.items)

    def start_box(self, index: int) -> BoxXYXY:
        item = self.items[index]
        if item.start is not None:
            return item.start
        return self.jitter(item.label, random.Random(random.getrandbits(64) if self.train else index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item = self.items[index]
        start = self.start_box(index)
        image = to_unit_float(self.images[item.image])  # as `load_image`
        crop = crop_boxes(image, [start], self.params)[0]
        if self.train:  # colours only, not the box channel
            crop = torch.cat([self.colour(crop[:3]), crop[3:]])
        return crop, torch.tensor(box_deltas(start, item.label)), torch.tensor(float(item.on_digit))


def nearest_label(box: BoxXYXY, labels: Sequence[BoxXYXY]) -> tuple[BoxXYXY, float]:
    """The labelled box that overlaps `box` most, and that IoU (on ties, also when it overlaps none:
    the first of `labels`, which must not be empty)."""
    ious = [box_iou(box, label) for label in labels]
    best = max(range(len(labels)), key=ious.__getitem__)
    return labels[best], ious[best]


def off_digit_box(
    labels: Sequence[BoxXYXY], width: int, height: int, rng: random.Random, max_iou: float = 0.3
) -> BoxXYXY | None:
    """A box on no digit of an image (`width` x `height` px, its digits' `labels` xyxy): the size of
    one of its labels, either moved sideways by 0.5-1.5 of its width (half on a digit, or beside the
    number: where the detector's false boxes sit) or put anywhere in the image; redrawn until it
    overlaps no label by IoU >= `max_iou` and lies inside the image (20 tries, then None)."""
    for _ in range(20):
        x0, y0, x1, y1 = rng.choice(labels)
        w, h = x1 - x0, y1 - y0
        if rng.random() < 0.5:
            dx = rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 1.5) * w
            dy = rng.gauss(0.0, 0.1) * h
            box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        else:
            left, top = rng.uniform(0, max(width - w, 0)), rng.uniform(0, max(height - h, 0))
            box = (left, top, left + w, top + h)
        inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
        if inside and nearest_label(box, labels)[1] < max_iou:
            return box
    return None


def off_digit_items(records: Sequence[ImageRecord], seed: int) -> list[RefineItem]:
    """One `off_digit_box` per record with labels (drawn from `seed`; None draws are left out), aimed
    at `nearest_label`."""
    rng, out = random.Random(seed), []
    for index, record in enumerate(records):
        labels = [b.box_xyxy for b in record.boxes]
        box = off_digit_box(labels, record.width, record.height, rng) if labels else None
        if box is not None:
            out.append(RefineItem(index, nearest_label(box, labels)[0], box, on_digit=False))
    return out


def matched_detections(
    records: Sequence[ImageRecord],
    detections: Mapping[int, Sequence[Detection]],
    min_score: float = 0.1,
    min_iou: float = 0.4,
    off_digit: bool = False,
) -> list[RefineItem]:
    """A `RefineItem` for every detection scoring >= `min_score` whose best-overlapping labelled box
    of its image overlaps it by IoU >= `min_iou`; with `off_digit`, instead for every such detection
    that overlaps no label that much (on_digit False, aimed at `nearest_label`)."""
    out = []
    for index, record in enumerate(records):
        labels = [b.box_xyxy for b in record.boxes]
        for d in detections.get(record.image_id, ()):
            if d.score < min_score or not labels:
                continue
            label, iou = nearest_label(d.box_xyxy, labels)
            if (iou >= min_iou) != off_digit:
                out.append(RefineItem(index, label, d.box_xyxy, on_digit=not off_digit))
    return out


def load_images(records: Sequence[ImageRecord], desc: str, show_progress: bool = True) -> list[torch.Tensor]:
    """Every record's image as ByteTensor[3, H, W] (`training.data.read_rgb_all`)."""
    return read_rgb_all([r.path for r in records], desc, show_progress)


def refined_iou(predicted: torch.Tensor, target: torch.Tensor, step: float) -> torch.Tensor:
    """FloatTensor[B]: the IoU with its label of each start box once its edges move by `step` x
    `predicted` (deltas FloatTensor[B, 4]; `target` FloatTensor[B, 4] the deltas to the label).
    Computed in the start box's own units, the box being (0, 0, 1, 1): scaling an axis leaves IoU
    unchanged. Without `shift_box`'s sliver rule (a box turned inside out counts as empty)."""
    moved = torch.cat([step * predicted[:, :2], 1 + step * predicted[:, 2:]], dim=1)
    label = torch.cat([target[:, :2], 1 + target[:, 2:]], dim=1)

    def area(b: torch.Tensor) -> torch.Tensor:
        return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)

    lo, hi = torch.maximum(moved[:, :2], label[:, :2]), torch.minimum(moved[:, 2:], label[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=1)
    return inter / (area(moved) + area(label) - inter).clamp(min=1e-9)


def refine_loss(
    predicted: torch.Tensor, target: torch.Tensor, step: float = 1.0, on_digit: torch.Tensor | None = None
) -> torch.Tensor:
    """Smooth L1 between deltas FloatTensor[B, 4] (box units), measured in DELTA_SCALE units, over
    the items on a digit (`on_digit` FloatTensor[B] of 1.0 / 0.0; None: all). With a fit column
    (`predicted` FloatTensor[B, 5]), plus binary cross-entropy over all items between its sigmoid
    and the IoU the box reaches when moved by `step` x the predicted deltas (`refined_iou`, deltas
    detached: the fit learns to judge the correction, not to steer it)."""
    deltas = predicted[:, :4]
    if on_digit is None:
        on_digit = torch.ones(len(predicted), device=predicted.device)
    per_item = nn.functional.smooth_l1_loss(
        deltas * DELTA_SCALE, target * DELTA_SCALE, beta=SMOOTH_L1_BETA, reduction="none"
    ).mean(dim=1)
    loss = (per_item * on_digit).sum() / on_digit.sum().clamp(min=1)
    if predicted.shape[1] > 4:
        reached = refined_iou(deltas.detach(), target, step)
        loss = loss + nn.functional.binary_cross_entropy_with_logits(predicted[:, 4], reached)
    return loss


@torch.inference_mode()
def score_refiner(model: nn.Module, crops: RefineCrops, batch_size: int, step: float) -> dict[str, float]:
    """Mean loss and mean IoU with the label of the start boxes (`iou_before`) and of the refined
    boxes (`iou_after`, edges moved by `step` x the prediction) over `crops` (not training)."""
    model.eval()
    loss_sum = before = after = 0.0
    for start in range(0, len(crops), batch_size):
        idx = range(start, min(start + batch_size, len(crops)))
        x, y, on = zip(*(crops[i] for i in idx), strict=True)
        predicted = model(torch.stack(x))
        loss_sum += refine_loss(predicted, torch.stack(y), step, torch.stack(on)).item() * len(idx)
        for i, deltas in zip(idx, predicted[:, :4].tolist(), strict=True):
            box, label = crops.start_box(i), crops.items[i].label
            before += box_iou(box, label)
            after += box_iou(shift_box(box, deltas, step), label)
    n = max(len(crops), 1)
    return {"loss": loss_sum / n, "iou_before": before / n, "iou_after": after / n}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_crop_training_args(p, epochs=12, lr=2e-3)
    defaults = RefineParams()
    p.add_argument("--width", type=int, default=24, help="channels of the first stage (x2 per stage)")
    p.add_argument(
        "--context", type=float, default=defaults.context, help="crop side / the box's longer side"
    )
    p.add_argument(
        "--step", type=float, default=defaults.step, help="fraction of the correction applied when served"
    )
    p.add_argument(
        "--no-box-channel",
        action="store_true",
        help="RGB crops only, without the box's rectangle as a 4th channel (experiment 17's refiner)",
    )
    p.add_argument(
        "--fit-head",
        action="store_true",
        help="a 5th output, the refined box's IoU with its label, which Task 1 multiplies into the score",
    )
    p.add_argument(
        "--negatives",
        action="store_true",
        help="with --fit-head: the fit also learns from boxes on no digit (one off-digit box per training "
        "image, and the --site-detections boxes that overlap no label)",
    )
    p.add_argument(
        "--site-detections",
        type=Path,
        nargs="+",
        help="a detector's pred.json on the training split (training.evaluate --split train --no-reader "
        "--no-refiner), or several (one per annotation file of the training data): its boxes on a "
        "labelled digit are added as training inputs",
    )
    p.set_defaults(size=defaults.size, weight_decay=1e-4)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> RefinerMeta:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = RefineParams(
        size=args.size, context=args.context, step=args.step, box_channel=not args.no_box_channel
    )
    if args.negatives and not args.fit_head:
        raise SystemExit("--negatives teaches the fit head only: add --fit-head")
    train, valid, fingerprint = load_splits(load_crop_config(args))
    items = [RefineItem(i, b.box_xyxy) for i, r in enumerate(train) for b in r.boxes]
    if args.site_detections:
        detections: dict[int, list[Detection]] = {}
        for path in args.site_detections:
            for image_id, found_there in read_pred_json(path).items():
                detections.setdefault(image_id, []).extend(found_there)
        found = matched_detections(train, detections)
        log.info("%d detector boxes on labelled digits", len(found))
        items += found
        if args.negatives:
            off = matched_detections(train, detections, min_score=0.0, off_digit=True)
            log.info("%d detector boxes on no digit", len(off))
            items += off
    if args.negatives:
        off = off_digit_items(train, args.seed)
        log.info("%d off-digit boxes", len(off))
        items += off
    jitter = BoxJitter()
    train_set = RefineCrops(
        load_images(train, "train images", not args.no_progress), items, params, jitter, train=True
    )
    valid_items = [RefineItem(i, b.box_xyxy) for i, r in enumerate(valid) for b in r.boxes]
    valid_set = RefineCrops(
        load_images(valid, "valid images", not args.no_progress), valid_items, params, jitter, train=False
    )
    log.info("refiner crops: %d train / %d valid", len(train_set), len(valid_set))
    seed_everything(args.seed)  # the initial weights too: the same flags give the same refiner
    model = BoxRefiner(args.width, params.box_channel, args.fit_head)
    history = fit_refiner(model, train_set, valid_set, args, params)
    metrics = {
        "last_epoch": history[-1] if history else {},
        "data_fingerprint": fingerprint,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    with staged_folder(args.out) as staging:  # the weights and their json, both or neither
        meta = save_refiner(staging, model.cpu(), params, metrics=metrics)
    log.info("refiner written to %s", args.out)
    return meta


def train_epoch(
    model: BoxRefiner,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: RefineParams,
    bar: tqdm[Any],
) -> tuple[float, int, int]:
    """One pass over `batches` of (crops FloatTensor[B, C, S, S] (C 4 with the box channel, else 3),
    target deltas FloatTensor[B, 4], on_digit FloatTensor[B] of 1.0 / 0.0), a step each, the mean
    loss shown on `bar`; returns (the loss summed over crops, crops seen, steps)."""
    model.train()
    device = next(model.parameters()).device
    loss_sum, seen, steps = 0.0, 0, 0
    for crops, deltas, on_digit in batches:
        out = model(crops.to(device))
        loss = refine_loss(out, deltas.to(device), params.step, on_digit.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum, seen, steps = loss_sum + loss.item() * len(crops), seen + len(crops), steps + 1
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    return loss_sum, seen, steps


def fit_refiner(
    model: BoxRefiner,
    train_set: RefineCrops,
    valid_set: RefineCrops,
    args: argparse.Namespace,
    params: RefineParams,
) -> list[dict[str, float]]:
    """AdamW with a one-cycle schedule (5 % warm-up to `args.lr`, cosine down) on smooth L1 of the
    deltas; after each epoch, score `valid_set` (`score_refiner`), write the rows so far to
    `args.out`/metrics.jsonl, draw `args.out`/refiner_training.png and save the state for `--resume`
    (`training.fit`). Returns the history; raises `RunStoppedError` when Ctrl-C or SIGTERM stops it
    first."""
    device = resolve_device(args.device)
    generator = seed_everything(args.seed)
    keyed, order = shuffled_draws(train_set, args.seed)  # the photos' draws and order
    loader: StopSafeLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = StopSafeLoader(
        keyed, batch_size=args.batch_size, drop_last=True,
        sampler=order, num_workers=args.workers,
        generator=generator, persistent_workers=args.workers > 0,
    )  # fmt: skip
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    per_epoch = min(len(loader), args.max_steps or len(loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=max(per_epoch * args.epochs, 1), pct_start=0.05
    )
    state = FitState(args.out, model, optimizer, scheduler, generator, recorded_flags(args))
    history = state.start(resume=args.resume)
    with StopRequest() as stop, closing(loader):  # its workers end with the loop
        for epoch in range(len(history) + 1, args.epochs + 1):
            order.set_epoch(epoch)
            start = time.perf_counter()
            bar = tqdm(
                loader, total=per_epoch, desc=f"refiner {epoch}", disable=args.no_progress, leave=False
            )
            loss_sum, seen, steps = train_epoch(
                model, epoch_batches(bar, per_epoch, stop), optimizer, scheduler, params, bar
            )
            if steps < per_epoch:
                raise stopped_in_epoch(args.out, stop, epoch, steps, per_epoch)
            val = score_refiner(model.cpu(), valid_set, args.batch_size, params.step)
            model.to(device)
            row = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(seen, 1),
                "crops_per_s": seen / max(time.perf_counter() - start, 1e-9),
                "val_loss": val["loss"],
                "val_iou_before": val["iou_before"],
                "val_iou_after": val["iou_after"],
            }
            state.end_epoch(history, row, lambda rows: plot_refiner(rows, args.out / "refiner_training.png"))
            if stop.requested and epoch < args.epochs:
                raise stopped_after_epoch(args.out, stop, epoch)
    return history


if __name__ == "__main__":
    run_tool(main)
