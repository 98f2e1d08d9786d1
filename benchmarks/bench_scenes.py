"""How well the service reads a house number that fills little of a large photo.

    python benchmarks/bench_scenes.py [--checkpoint DIR] [--images 150] [--factors 1 2 3 4 6] \
        [--strips 4 8 12 16] [--search-tiles 0 3] [--search-below-p 1 0.85] [--search-near 0 0.05]

The validation photos are crops around their numbers. This pastes each of the first `--images` of them,
at its own size, into a scene `factor` times as wide and as high (`training.scenes`: a backdrop of
smooth colour noise around the photo's mean colour, no digits in it, the photo at a random place;
seeded, the same for every setting). A factor of 4 gives a 126 x 56 photo a 504 x 224 scene, in which
the model sees its digits at a quarter of the size it sees them at alone. With `--strips`, each photo
is pasted instead into a strip as high as the photo and that many times as wide as high
(`training.scenes.place_in_strip`): a 12:1 strip reaches the model 12 / 4 times smaller than the photo
alone, unless the search cuts it (experiment 153); the search's square tiles never fit a strip of a
photo under 192 px high, so `--search-tiles 0 3` compares the search of strips alone. For each
factor or strip and each
search setting (`ZoomParams.search_tiles`, models/zoom.py; 0 = off) and limit on the search of photos
whose first pass locates something (`ZoomParams.search_below_p`: searched only where the reading
without it has p_correct under it; 1 = always; default: the checkpoint's) and where such a photo is
searched (`ZoomParams.search_near`: only the tiles near what its first pass marks; 0 = every tile;
default: the checkpoint's) it prints how many numbers
`Predictor.detect` and the number assembly read right (the same rule as `training.evaluate`: the whole
number, as an integer), how many labelled numbers /v1/confirm passes at its default `min_score` (the
number read or a reading one edit away, models/confirm.py), and the time per photo (p50, mean, max).
Needs ../shared/data/svhn-hw2; the checkpoint is the shipped one unless `--checkpoint` says otherwise.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.confirm import confirm_number  # noqa: E402
from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import ImageRecord, load_coco_split  # noqa: E402
from training.scenes import place_in_scene, place_in_strip  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "svhn-hw2"


Place = Callable[[Image.Image, random.Random], tuple[Image.Image, tuple[int, int]]]


def in_scene(factor: int) -> Place:
    """Places a photo in a scene `factor` times its size (`training.scenes.place_in_scene`)."""
    return lambda photo, rng: place_in_scene(photo, factor, rng)


def in_strip(aspect: float) -> Place:
    """Places a photo in a strip `aspect` times as wide as high (`training.scenes.place_in_strip`)."""
    return lambda photo, rng: place_in_strip(photo, aspect, rng)


def read_scenes(
    predictor: Predictor, records: list[ImageRecord], place: Place, seed: int
) -> tuple[int, int, list[float]]:
    """Numbers read right over the scenes that `place` makes of `records` (drawing from a generator
    seeded with `seed`); the labelled numbers /v1/confirm passes at its default min_score
    (models/confirm.py); and ms per photo."""
    rng = random.Random(seed)
    right, confirmed, times_ms = 0, 0, []
    for record in records:
        scene = np.array(place(Image.open(record.path).convert("RGB"), rng)[0])
        start = time.perf_counter()
        findings = predictor.detect([scene])[0]
        times_ms.append((time.perf_counter() - start) * 1000)
        number = predictor.assemble(findings.sites)
        right += number.value == record.number
        confirmed += confirm_number(record.number, number, findings.sites, findings.detections).shown
    return right, confirmed, times_ms


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    p.add_argument("--images", type=int, default=150)
    p.add_argument("--factors", type=int, nargs="*", default=[1, 2, 3, 4, 6])
    p.add_argument("--strips", type=float, nargs="*", default=[], help="strips, times as wide as high")
    p.add_argument("--search-tiles", type=int, nargs="+", default=[0, 3])
    p.add_argument("--search-below-p", type=float, nargs="+", help="default: the checkpoint's")
    p.add_argument("--search-near", type=float, nargs="+", help="default: the checkpoint's")
    args = p.parse_args(argv)
    if not (DATA / "valid.json").is_file():
        sys.exit(f"needs the real validation split in {DATA}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    records = load_coco_split(DATA / "valid", DATA / "valid.json")[0][: args.images]
    limits = args.search_below_p
    # loaded with a limit, so that the verifier that decides it is loaded too (models.verifier.gate_verifier)
    predictor = Predictor.load(
        args.checkpoint, torch.device("cpu"), search_below_p=min(limits) if limits else None
    )
    predictor.warm_up()
    shipped = predictor.zoom
    if predictor.gate is None and shipped.search_located and min(limits or [shipped.search_below_p]) < 1:
        print("no verifier for the limit (see the warning): every large photo searched")
    print(f"{len(records)} validation photos, {args.checkpoint}, CPU, {torch.get_num_threads()} threads")
    scenes = [(f"{f}x", in_scene(f), f) for f in args.factors] + [
        (f"{a:g}:1", in_strip(a), round(10 * a)) for a in args.strips
    ]
    print(" scene  search   limit    near  read right   confirmed   p50 ms  mean ms   max ms")
    for name, place, seed in scenes:
        for tiles in args.search_tiles:
            for limit in limits or [shipped.search_below_p]:
                for near in args.search_near or [shipped.search_near]:
                    predictor.zoom = replace(
                        shipped, search_tiles=tiles, search_below_p=limit, search_near=near
                    )
                    right, confirmed, times = read_scenes(predictor, records, place, seed)
                    print(
                        f"{name:>6}  {tiles:>6}  {limit:>6.2f}  {near:>6.2f}"
                        f"  {right:>4} / {len(records):<4}  {confirmed:>4} / {len(records):<4}"
                        f"  {statistics.median(times):>7.1f}  {statistics.mean(times):>7.1f}"
                        f"  {max(times):>7.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
