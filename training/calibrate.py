"""Measure the activation ranges that let a checkpoint's detector, box refiner and reader run in int8
on the CPU, and write them into the checkpoint as its `int8` part (models/int8.py).

    python -m training.calibrate --checkpoint models/default --images ../shared/data/svhn-hw2/train \
        [--count 64] [--seed 0]

The images are drawn at random (seeded) from the folder; use training images, never the split the
model is evaluated on. The detector runs as the service prepares it (`models.optimize`), in float32,
on the CPU. The box refiner and the reader, where the checkpoint has them, are then measured on the
crops they see when served: the int8 detector's boxes on the same images (second look included), the
refiner's crops of them, and the reader's crops of the refined boxes. Everything that loads the
checkpoint on a CPU then runs those parts in int8 (`training.evaluate --no-int8` and
`DIGITSERVE_USE_INT8=false` turn that off). Run it again after any of their weights change: a part
measured on other detector weights is refused at load time, and a refiner or reader whose weights
changed runs in float32, with a warning.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from models.atomic import staged_folder
from models.checkpoint import resolve_checkpoint_dir
from models.int8 import Int8Meta, calibrate_crop_net, calibrate_detector, quantize_detector, save_int8
from models.optimize import load_prepared_detector, load_prepared_reader, load_prepared_refiner
from models.refiner import crop_boxes, refine_images
from models.reread import crop_digits
from models.zoom import ZoomParams, detect_with_zoom
from training.data import DataError, image_paths, load_image
from training.exits import run_tool

log = logging.getLogger(__name__)


def draw_images(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` image files of `folder` drawn at random with `seed` (all of them when it has fewer), in
    the order drawn. Raises DataError for a folder without images."""
    paths = image_paths(folder)
    if not paths:
        raise DataError(f"no images in {folder}")
    return random.Random(seed).sample(paths, min(count, len(paths)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder, written into")
    p.add_argument("--images", required=True, type=Path, help="folder of training images to measure on")
    p.add_argument("--count", type=int, default=64, help="images drawn (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> Int8Meta:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = resolve_checkpoint_dir(args.checkpoint)
    cpu = torch.device("cpu")
    model, meta, _ = load_prepared_detector(folder, cpu, use_int8=False)
    paths = draw_images(args.images, args.count, args.seed)
    images = [load_image(p) for p in tqdm(paths, desc="calibrate", disable=args.no_progress)]
    stats = calibrate_detector(model, images)
    detector = quantize_detector(model, stats)  # the crop nets see the int8 detector's boxes, as served
    crop_nets = calibrate_crop_nets(detector, meta.zoom, folder, images, args.no_progress)
    for net_stats, _sha in crop_nets.values():
        stats.update(net_stats)
    with staged_folder(folder) as staging:  # the ranges' two files, both or neither
        written = save_int8(
            staging,
            stats,
            detector_sha256=meta.weights_sha256,
            calibration_images=len(paths),
            calibration=f"{len(paths)} images of {args.images} drawn with seed {args.seed}",
            crop_nets={name: sha for name, (_stats, sha) in crop_nets.items()},
        )
    parts = ", ".join(["detector", *crop_nets])
    count = len(stats) // 2
    print(f"wrote the int8 ranges of {count} activations ({parts}) to {folder} ({written.calibration})")
    return written


def calibrate_crop_nets(
    detector: FasterRCNN, zoom: ZoomParams, folder: Path, images: Sequence[torch.Tensor], quiet: bool
) -> dict[str, tuple[dict[str, torch.Tensor], str]]:
    """The int8 ranges (`models.int8.calibrate_crop_net`) of the checkpoint `folder`'s box refiner and
    reader, those it has, by name, each with the sha256 of the weights measured: on the crops they
    see when served on `images` (FloatTensor[3, H, W] in [0, 1]) after `detector` (the detector as
    served, with the `zoom` settings): the refiner's crops of the detected boxes, then the reader's
    crops of the refined ones. Empty, with a warning, when the detector finds no box on any image."""
    cpu = torch.device("cpu")
    refiner = load_prepared_refiner(folder, cpu, use_int8=False)
    reader = load_prepared_reader(folder, cpu, use_int8=False)
    if refiner is None and reader is None:
        return {}
    refiner_crops: list[torch.Tensor] = []
    reader_crops: list[torch.Tensor] = []
    with torch.inference_mode():
        for image in tqdm(images, desc="calibrate crops", disable=quiet):
            found = detect_with_zoom(detector, [image], zoom)
            if not found[0]:
                continue
            if refiner is not None:
                refiner_crops.append(crop_boxes(image, [d.box_xyxy for d in found[0]], refiner[1].params))
                found = refine_images(refiner[0], [image], found, refiner[1].params)
            if reader is not None:
                reader_crops.append(crop_digits(image, [d.box_xyxy for d in found[0]], reader[1].crop))
    if not reader_crops and not refiner_crops:
        count = len(images)
        log.warning("the detector found no box on the %d images: the refiner and reader stay float32", count)
        return {}
    out: dict[str, tuple[dict[str, torch.Tensor], str]] = {}
    if refiner is not None:
        out["refiner"] = (calibrate_crop_net(refiner[0], "refiner", refiner_crops), refiner[1].sha256)
    if reader is not None:
        out["reader"] = (calibrate_crop_net(reader[0], "reader", reader_crops), reader[1].sha256)
    return out


if __name__ == "__main__":
    run_tool(main)
