"""How well the service reads a house number photographed turned a few degrees.

    python benchmarks/bench_turned.py [--checkpoint DIR] [--images 807] [--degrees 4 8 12]

Each validation photo is read upright, turned (`training.turned.turn_photo`: counter-clockwise for even
image ids, clockwise for odd, on a canvas grown to hold all of it, the uncovered corners in the photo's
mean colour) and upright on that same canvas (`training.turned.frame_alike`), so that what the turn
costs can be told from what the larger frame costs: a photo turned 8 degrees is ~1.3 x as high, and its
digits fill that much less of it. For each angle it prints how many numbers `Predictor.detect` and the
number assembly read right (the rule of `training.evaluate`: the whole number, as an integer) each
way, and how many right upright readings the turn breaks and wrong ones it mends. Needs
../shared/data/svhn-hw2; the checkpoint is the shipped one unless `--checkpoint` says otherwise.
"""

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
from training.data import load_coco_split  # noqa: E402
from training.turned import frame_alike, signed_turn, turn_photo  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "svhn-hw2"


def read(predictor: Predictor, photo: Image.Image) -> int:
    """The number `predictor` reads in `photo` (RGB); -1 for none."""
    return predictor.assemble(predictor.detect([np.array(photo)])[0].sites).value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    p.add_argument("--images", type=int, default=807)
    p.add_argument("--degrees", type=float, nargs="+", default=[4.0, 8.0, 12.0])
    args = p.parse_args(argv)
    if not (DATA / "valid.json").is_file():
        sys.exit(f"needs the real validation split in {DATA}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    records = load_coco_split(DATA / "valid", DATA / "valid.json")[0][: args.images]
    predictor = Predictor.load(args.checkpoint, torch.device("cpu"))
    predictor.warm_up()
    photos = [Image.open(record.path).convert("RGB") for record in records]
    upright = [read(predictor, photo) == record.number for photo, record in zip(photos, records, strict=True)]
    print(f"{len(records)} validation photos, {args.checkpoint}, CPU, {torch.get_num_threads()} threads")
    print(f"read right upright: {sum(upright)}")
    print("degrees  turned  framed alike, upright  turned: breaks  mends")
    for degrees in args.degrees:
        turned_right = framed_right = broken = mended = 0
        for photo, record, was_right in zip(photos, records, upright, strict=True):
            turned = turn_photo(photo, signed_turn(record.image_id, degrees))
            is_right = read(predictor, turned) == record.number
            framed_right += read(predictor, frame_alike(photo, turned.size)) == record.number
            turned_right += is_right
            broken += was_right and not is_right
            mended += is_right and not was_right
        print(
            f"{degrees:>7.1f}  {turned_right:>6}  {framed_right:>21}  {broken:>14}  {mended:>5}", flush=True
        )


if __name__ == "__main__":
    main()
