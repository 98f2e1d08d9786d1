"""How well the service reads a house number whose digits stand one above the other.

    python benchmarks/bench_columns.py [--checkpoint DIR [DIR ...]] [--names NAME ...] [--images 807] \
        [--examples columns.png]

Each validation photo of two or more digits is read as it is and with its digits stacked top to
bottom (`training.columns.stack_digits`: each labelled digit cut out with a little of its plate, the
cuts stacked in the number's order on a canvas of the plate's colour), framed two ways: at the
photo's scale (the canvas as wide as the photo is high, so that the detector sees the digits at the
size it sees them in the photo) and in the photo's shape (the canvas as wide over high as the photo:
the more digits stacked, the smaller each, as a column on a post photographed from the street; the
photo as it is on a canvas of that size, `training.turned.frame_alike`, tells what the smaller scale
alone costs). A stacked photo's number is its digits top to bottom. For each checkpoint it prints
how many numbers `Predictor.detect` and the number assembly read right (the rule of
`training.evaluate`: the whole number, as an integer): as served (a column read top to bottom,
`models.assembly.is_column`), and left to right as before experiment 158 (the same detections); and
how many stacked photos the detector found every digit of (in any order), the most any order can
read. `--examples` draws the first photos stacked at their scale with their readings both ways.
Needs ../shared/data/svhn-hw2; the checkpoint is the shipped one unless `--checkpoint` says
otherwise.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.valid_photos import add_checkpoint_arguments, checkpoint_names, read, validation_photos  # noqa: E402
from models.assembly import AssembledNumber, assemble_number  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.columns import stack_digits  # noqa: E402
from training.data import ImageRecord  # noqa: E402
from training.plots import plot_columns  # noqa: E402
from training.turned import frame_alike  # noqa: E402

EXAMPLES = 8


def in_order(record: ImageRecord) -> list[tuple[float, float, float, float]]:
    """`record`'s digit boxes (xyxy) in its number's order, left to right."""
    return [b.box_xyxy for b in sorted(record.boxes, key=lambda b: b.box_xyxy[0] + b.box_xyxy[2])]


FRAMINGS = ("at the photo's scale", "in the photo's shape")


def stack(photo: Image.Image, record: ImageRecord, framing: str) -> Image.Image:
    """`photo`'s digits stacked (`stack_digits`) at its scale (a canvas at least its height wide) or in
    its shape (a canvas of its width over height)."""
    if framing == FRAMINGS[0]:
        return stack_digits(photo, in_order(record), min_width=photo.height)[0]
    return stack_digits(photo, in_order(record), aspect=photo.width / photo.height)[0]


def measure(
    predictor: Predictor, photos: list[Image.Image], records: list[ImageRecord], examples: int
) -> tuple[dict[str, int], list[tuple[np.ndarray, int, AssembledNumber, AssembledNumber]]]:
    """Counts over the photos of two or more digits: "photos", "as is", and for each of `FRAMINGS`
    the stacked photos read right as served, read right left to right, and those the detector found
    every digit of; in the photo's shape also the photo as it is framed alike (on a canvas of the
    stacked photo's size, or its own where larger, `training.turned.frame_alike`). And the first
    `examples` photos stacked at their scale, with their label and their readings as served and left
    to right."""
    left_to_right = replace(predictor.assembly, read_columns=False)
    counts = {"photos": 0, "as is": 0}
    drawn = []
    for photo, record in zip(photos, records, strict=True):
        if len(record.boxes) < 2:
            continue
        counts["photos"] += 1
        counts["as is"] += read(predictor, photo) == record.number
        for framing in FRAMINGS:
            stacked = stack(photo, record, framing)
            sites = predictor.detect([np.array(stacked)])[0].sites
            served, flat = predictor.assemble(sites), assemble_number(sites, left_to_right)
            for key, right in (
                ("read", served.value == record.number),
                ("read left to right", flat.value == record.number),
                ("every digit found", sorted(served.text) == sorted(str(record.number))),
            ):
                counts[f"{framing}: {key}"] = counts.get(f"{framing}: {key}", 0) + right
            if framing == FRAMINGS[1]:
                frame = (max(stacked.width, photo.width), max(stacked.height, photo.height))
                alike = read(predictor, frame_alike(photo, frame)) == record.number
                counts[f"{framing}: as is, framed alike"] = (
                    counts.get(f"{framing}: as is, framed alike", 0) + alike
                )
            elif len(drawn) < examples:
                drawn.append((np.array(stacked), record.number, served, flat))
    return counts, drawn


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(p)
    p.add_argument(
        "--examples", type=Path, help="draw the first stacked photos and their readings to this PNG"
    )
    args = p.parse_args(argv)
    names = checkpoint_names(p, args)
    records, photos = validation_photos(args.images)
    for name, checkpoint in zip(names, args.checkpoint, strict=True):
        predictor = Predictor.load(checkpoint, torch.device("cpu"))
        predictor.warm_up()
        print(
            f"{name}: {len(records)} validation photos, {checkpoint}, CPU, {torch.get_num_threads()} threads"
        )
        counts, drawn = measure(predictor, photos, records, EXAMPLES if args.examples else 0)
        for key, value in counts.items():
            print(f"  {key:<44} {value:>5}")
        if args.examples:
            path = (
                args.examples if len(names) == 1 else args.examples.with_stem(f"{args.examples.stem}_{name}")
            )
            print(f"wrote {plot_columns(drawn, path)}")


if __name__ == "__main__":
    main()
