"""Train the rescorer (`models.rescorer`): Task 1's estimate of each detection's quality, from its
place among its image's other detections.

    python -m training.rescorer --checkpoint models/default --data ../shared/data/svhn-hw2 \
        --annotations ../shared/data/svhn-hw2/train.json runs/vetted/train_noisy_vetted_shipped.json \
        --out runs/rescorer
    python -m training.export --checkpoint models/default --out models/default --rescorer runs/rescorer

The checkpoint runs over the images of every annotation file as the service runs it (the second look,
then the box refiner, which must have a fit head, then its reader on every box); each detection's
features and its quality against the labels (the share of COCO's IoU thresholds at which it is a
true positive) make one training row.
Best on images the detector was not trained on, whose detections look like those it will see (the
shipped rescorer: the vetted `train_noisy.json` images, plus the training split). The last epoch of
every member is written to `--out` as a rescorer folder; nothing is picked by a validation score.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from models.atomic import staged_folder
from models.hw2 import Detections
from models.optimize import load_prepared_reader, load_prepared_refiner
from models.reader import DigitReader, ReaderMeta
from models.refiner import BoxRefiner, RefinerMeta
from models.rescorer import Rescorer, RescorerMeta, detection_features, quality_target, save_rescorer
from models.zoom import ZoomParams
from training.data import ImageRecord, load_coco_split
from training.exits import run_tool
from training.runner import add_runner_args, load_prepared, predict_records, read_records, refine_records
from training.train import seed_everything

log = logging.getLogger(__name__)


def training_rows(
    records: Sequence[ImageRecord], detections: Detections, reader_probs: dict[int, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(FloatTensor[N, F] features, FloatTensor[N] quality targets) of every detection of `records`
    (image_id -> refined detections with a fit, xyxy in each image's pixels; `reader_probs`: image_id
    -> the reader's softmax on each of them, `training.runner.read_records`)."""
    features, targets = [], []
    for r in records:
        found = detections.get(r.image_id, [])
        if not found:
            continue
        labels = [(b.box_xyxy, b.digit) for b in r.boxes]
        features.append(detection_features(found, r.width, r.height, reader_probs[r.image_id]))
        targets += [quality_target(d, labels) for d in found]
    if not features:
        raise ValueError("no detections to learn from")
    return torch.cat(features), torch.tensor(targets, dtype=torch.float32)


def fit_rescorer(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    hidden: int = 16,
    members: int = 5,
    epochs: int = 30,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[Rescorer, list[float]]:
    """A `Rescorer` fitted to FloatTensor[N, F] `features` and FloatTensor[N] `targets` in [0, 1]
    (binary cross-entropy with soft targets; AdamW, one-cycle schedule), each member on its own
    shuffle of the rows; returns it in eval mode with the mean training loss per epoch."""
    generator = seed_everything(seed)
    model = Rescorer(features.shape[1], hidden, members)
    model.set_standardisation(features)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = (len(features) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=epochs * steps)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc="rescorer", leave=False):
        order = torch.stack([torch.randperm(len(features), generator=generator) for _ in range(members)])
        total = 0.0
        for start in range(0, len(features), batch_size):
            rows = order[:, start : start + batch_size]  # [E, B]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model.logits(features[rows]), targets[rows]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * rows.shape[1]
        losses.append(total / len(features))
    return model.eval(), losses


def source_rows(
    args: argparse.Namespace,
    images: Path,
    source: Path,
    model: FasterRCNN,
    device: torch.device,
    zoom: ZoomParams,
    refiner: tuple[BoxRefiner, RefinerMeta],
    reader: tuple[DigitReader, ReaderMeta],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """`training_rows` of the photos the COCO json `source` labels (in `images`), read by the detector
    (with its second look), refined and read as served, and a summary of them."""
    records = load_coco_split(images, source)[0]
    found = predict_records(model, records, device, args, f"detect {source.name}", zoom)
    found = refine_records(refiner, records, found, args.batch_size)
    x, y = training_rows(records, found, read_records(reader, records, found, args.batch_size))
    log.info("%s: %d images, %d detections, mean quality %.3f", source, len(records), len(y), y.mean())
    return x, y, {"images": len(records), "detections": len(y), "mean_quality": y.mean().item()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint folder with a reader and a box refiner that has a fit head",
    )
    p.add_argument("--data", required=True, type=Path, help="data set root in the HW2 layout")
    p.add_argument("--images", help="image folder of the annotations (default: DATA/train)")
    p.add_argument("--annotations", required=True, nargs="+", type=Path, help="COCO json files to learn from")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    add_runner_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> RescorerMeta:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model, meta, device = load_prepared(args.checkpoint, args.device)
    refiner = load_prepared_refiner(args.checkpoint, device)
    if refiner is None or not refiner[1].fit_head:
        raise SystemExit(f"{args.checkpoint} has no box refiner with a fit head: the rescorer needs its fit")
    reader = load_prepared_reader(args.checkpoint, device)
    if reader is None:
        raise SystemExit(f"{args.checkpoint} has no reader: the rescorer needs its readings")
    images = Path(args.images) if args.images else args.data / "train"
    features, targets, sources = [], [], {}
    for source in args.annotations:
        x, y, sources[str(source)] = source_rows(
            args, images, source, model, device, meta.zoom, refiner, reader
        )
        features.append(x)
        targets.append(y)
    rescorer, losses = fit_rescorer(
        torch.cat(features),
        torch.cat(targets),
        hidden=args.hidden,
        members=args.members,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
    )
    log.info("training loss per epoch: %s", ", ".join(f"{v:.4f}" for v in losses))
    metrics = {
        "checkpoint": str(args.checkpoint),
        "weights_sha256": meta.weights_sha256,
        "refiner_sha256": refiner[1].sha256,
        "reader_sha256": reader[1].sha256,
        "sources": sources,
        "epochs": args.epochs,
        "lr": args.lr,
        "seed": args.seed,
        "train_loss": [round(v, 5) for v in losses],
    }
    with staged_folder(args.out) as staging:  # the weights and their json, both or neither
        written = save_rescorer(staging, rescorer, metrics=metrics)
    print(f"wrote {args.out}: {args.members} x MLP {args.hidden}, {sum(len(y) for y in targets)} detections")
    return written


if __name__ == "__main__":
    run_tool(main)
