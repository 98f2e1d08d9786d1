"""What the robustness benchmarks (`bench_turned.py`, `bench_quality.py`) share: the checkpoints to
compare, the validation photos, and a number read the way the service reads it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import ImageRecord, load_coco_split  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "svhn-hw2"


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """--checkpoint (several; default: the shipped one), --names (one per checkpoint) and --images."""
    p.add_argument("--checkpoint", type=Path, nargs="+", default=[SHIPPED_CHECKPOINT])
    p.add_argument("--names", nargs="+", help="one per checkpoint, for the plot (default: folder names)")
    p.add_argument("--images", type=int, default=807)


def checkpoint_names(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The name of each of `args.checkpoint`: `args.names`, else the folder names; a parser error when
    the counts differ."""
    names: list[str] = args.names or [path.name for path in args.checkpoint]
    if len(names) != len(args.checkpoint):
        p.error(f"{len(names)} names for {len(args.checkpoint)} checkpoints")
    return names


def validation_photos(images: int) -> tuple[list[ImageRecord], list[Image.Image]]:
    """The first `images` validation records and their photos (RGB); exits where the data is absent.
    Limits torch to 2 threads, as on the 2-core box."""
    if not (DATA / "valid.json").is_file():
        sys.exit(f"needs the real validation split in {DATA}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    records = load_coco_split(DATA / "valid", DATA / "valid.json")[0][:images]
    return records, [Image.open(record.path).convert("RGB") for record in records]


def read(predictor: Predictor, photo: Image.Image) -> int:
    """The number `predictor` reads in `photo` (RGB); -1 for none."""
    return predictor.assemble(predictor.detect([np.array(photo)])[0].sites).value
