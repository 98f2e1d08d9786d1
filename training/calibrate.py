"""Measure the activation ranges that let a checkpoint's detector run in int8 on the CPU, and write
them into the checkpoint as its `int8` part (models/int8.py).

    python -m training.calibrate --checkpoint models/default --images ../shared/data/svhn-hw2/train \
        [--count 64] [--seed 0]

The images are drawn at random (seeded) from the folder; use training images, never the split the
model is evaluated on. The detector runs as the service prepares it (`models.optimize`), in float32,
on the CPU. Everything that loads the checkpoint on a CPU then runs its detector in int8
(`training.evaluate --no-int8` and `DIGITSERVE_USE_INT8=false` turn that off). Run it again after the
detector's weights change: a part measured on other weights is refused at load time.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from models.checkpoint import resolve_checkpoint_dir
from models.int8 import Int8Meta, calibrate_detector, save_int8
from models.optimize import load_prepared_detector
from training.data import DataError, image_paths, load_image


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
    folder = resolve_checkpoint_dir(args.checkpoint)
    model, meta, _ = load_prepared_detector(folder, torch.device("cpu"), use_int8=False)
    paths = draw_images(args.images, args.count, args.seed)
    images = (load_image(p) for p in tqdm(paths, desc="calibrate", disable=args.no_progress))
    stats = calibrate_detector(model, images)
    written = save_int8(
        folder,
        stats,
        detector_sha256=meta.weights_sha256,
        calibration_images=len(paths),
        calibration=f"{len(paths)} images of {args.images} drawn with seed {args.seed}",
    )
    print(f"wrote the int8 ranges of {len(stats) // 2} activations to {folder} ({written.calibration})")
    return written


if __name__ == "__main__":
    main()
