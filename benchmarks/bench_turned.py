"""How well the service reads a house number photographed turned a few degrees.

    python benchmarks/bench_turned.py [--checkpoint DIR [DIR ...]] [--names NAME ...] [--images 807] \
        [--degrees 4 8 12] [--plot turned.png]

Each validation photo is read upright, turned (`training.turned.turn_photo`: counter-clockwise for even
image ids, clockwise for odd, on a canvas grown to hold all of it, the uncovered corners in the photo's
mean colour) and upright on that same canvas (`training.turned.frame_alike`), so that what the turn
costs can be told from what the larger frame costs: a photo turned 8 degrees is ~1.3 x as high, and its
digits fill that much less of it. For each checkpoint and angle it prints how many numbers
`Predictor.detect` and the number assembly read right (the rule of `training.evaluate`: the whole
number, as an integer) each way, and how many right upright readings the turn breaks and wrong ones it
mends; `--plot` draws the counts against the angle, one colour per checkpoint
(`training.plots.plot_turned`). Needs ../shared/data/svhn-hw2; the checkpoint is the shipped one
unless `--checkpoint` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.valid_photos import add_checkpoint_arguments, checkpoint_names, read, validation_photos  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import ImageRecord  # noqa: E402
from training.plots import plot_turned  # noqa: E402
from training.turned import frame_alike, signed_turn, turn_photo  # noqa: E402


def measure(
    predictor: Predictor, photos: list[Image.Image], records: list[ImageRecord], degrees: list[float]
) -> dict[float, tuple[int, int]]:
    """{0 and each of `degrees`: (numbers read right turned, read right upright framed alike)},
    printing a row per angle."""
    upright = [read(predictor, photo) == record.number for photo, record in zip(photos, records, strict=True)]
    counts = {0.0: (sum(upright), sum(upright))}
    print(f"read right upright: {sum(upright)}")
    print("degrees  turned  framed alike, upright  turned: breaks  mends")
    for angle in degrees:
        turned_right = framed_right = broken = mended = 0
        for photo, record, was_right in zip(photos, records, upright, strict=True):
            turned = turn_photo(photo, signed_turn(record.image_id, angle))
            is_right = read(predictor, turned) == record.number
            framed_right += read(predictor, frame_alike(photo, turned.size)) == record.number
            turned_right += is_right
            broken += was_right and not is_right
            mended += is_right and not was_right
        counts[angle] = (turned_right, framed_right)
        print(f"{angle:>7.1f}  {turned_right:>6}  {framed_right:>21}  {broken:>14}  {mended:>5}", flush=True)
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(p)
    p.add_argument("--degrees", type=float, nargs="+", default=[4.0, 8.0, 12.0])
    p.add_argument("--plot", type=Path, help="write the counts against the angle to this PNG")
    args = p.parse_args(argv)
    names = checkpoint_names(p, args)
    records, photos = validation_photos(args.images)
    results = {}
    for name, checkpoint in zip(names, args.checkpoint, strict=True):
        predictor = Predictor.load(checkpoint, torch.device("cpu"))
        predictor.warm_up()
        print(f"{len(records)} validation photos, {checkpoint}, CPU, {torch.get_num_threads()} threads")
        results[name] = measure(predictor, photos, records, args.degrees)
    if args.plot:
        print(f"wrote {plot_turned(results, len(records), args.plot)}")


if __name__ == "__main__":
    main()
