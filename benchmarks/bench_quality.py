"""How well the service reads a house number from a poor photo: compressed, far, blurred, smeared, grainy,
badly lit.

    python benchmarks/bench_quality.py [--checkpoint DIR [DIR ...]] [--names NAME ...] [--images 807] \
        [--jpeg 75 50 30 20 10] [--shrink 0.7 0.5 0.35 0.25] [--blur 0.5 1 1.5 2] [--noise 8 16 24 32] \
        [--dark 1 2 3 4 5] [--bright 0.5 1 1.5 2] [--haze 0.3 0.5 0.7 0.85] [--sodium 0.25 0.5 1] \
        [--motion 3 5 9 15] [--shadow 1 2 3] [--oblique 30 45 60 70] [--below 20 35 50] \
        [--sharpen 0.6] [--unstretched] [--unbalanced] [--unwidened] [--plain] [--plot quality.png]

Each validation photo is read as it is and made worse by each kind of `training.degrade` at each level
(an empty list leaves a kind out): saved as a JPEG of that quality; shrunk to that scale (the number
photographed from farther away; the median labelled digit height at each scale is printed); under a
Gaussian blur of that radius in px; with Gaussian grain of that standard deviation in grey levels, drawn
from the photo's id; underexposed or overexposed by that many stops; behind a veil of that share; under
that share of sodium street light; smeared sideways over that many px; half in shadow that many stops
deep; seen from the side of the street or from below at that many degrees (the last eight only when
asked for). For each checkpoint, kind and level it prints how many numbers
`Predictor.detect` and the number assembly read right (the rule of `training.evaluate`: the whole
number, as an integer), and how many right readings of the photo as it is the harm breaks and wrong ones
it mends; `--plot` draws the counts against the level, a panel per kind (`training.plots.plot_quality`).
The pipeline prepares each photo as the service does by default (`models.photo`: tinted photos balanced,
narrow-contrast ones stretched, grainy ones smoothed, no sharpening); `--sharpen GATE` also reads every
photo with blurred ones sharpened at that gate (`models.focus`, experiment 138), `--unstretched` with
the stretch off (`models.levels`, experiment 154), `--unbalanced` with the balance off
(`models.balance`, experiment 156), `--unwidened` without reading narrow digits again widened
and squat ones narrowed (`models.widen`, experiment 159) and `--plain` with every photo step off,
each as one more line per checkpoint. Needs ../shared/data/svhn-hw2; the checkpoint is the shipped
one unless `--checkpoint` says otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.valid_photos import add_checkpoint_arguments, checkpoint_names, read, validation_photos  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import ImageRecord  # noqa: E402
from training.degrade import KINDS, degrade  # noqa: E402
from training.plots import plot_quality  # noqa: E402

LEVELS: dict[str, list[float]] = {
    "jpeg": [75, 50, 30, 20, 10],
    "shrink": [0.7, 0.5, 0.35, 0.25],
    "blur": [0.5, 1, 1.5, 2],
    "noise": [8, 16, 24, 32],
    "dark": [],
    "bright": [],
    "haze": [],
    "sodium": [],
    "motion": [],
    "shadow": [],
    "oblique": [],
    "below": [],
}


def measure(
    predictor: Predictor,
    photos: list[Image.Image],
    records: list[ImageRecord],
    levels: dict[str, list[float]],
) -> dict[str, dict[float, int]]:
    """{kind: {each of its levels and the level that leaves a photo as it is: numbers read right}},
    printing a row per level."""
    clean = [read(predictor, photo) == record.number for photo, record in zip(photos, records, strict=True)]
    height = statistics.median(b.box_xyxy[3] - b.box_xyxy[1] for record in records for b in record.boxes)
    print(f"read right as they are: {sum(clean)}; median labelled digit height {height:.0f} px")
    counts: dict[str, dict[float, int]] = {}
    for kind, chosen in levels.items():
        unchanged = KINDS[kind][1]
        counts[kind] = {unchanged: sum(clean)}
        print(f"{kind:<7} {KINDS[kind][2]:>20}  read right  breaks  mends")
        for level in chosen:
            right = broken = mended = 0
            for photo, record, was_right in zip(photos, records, clean, strict=True):
                is_right = read(predictor, degrade(photo, kind, level, seed=record.image_id)) == record.number
                right += is_right
                broken += was_right and not is_right
                mended += is_right and not was_right
            counts[kind][float(level)] = right
            note = f"  (digits ~{height * level:.0f} px high)" if kind == "shrink" else ""
            print(f"{'':<7} {level:>20g}  {right:>10}  {broken:>6}  {mended:>5}{note}", flush=True)
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(p)
    for kind, default in LEVELS.items():
        p.add_argument(f"--{kind}", type=float, nargs="*", default=default, help=f"{KINDS[kind][2]} levels")
    p.add_argument("--sharpen", type=float, help="also read with blurred photos sharpened at this gate")
    p.add_argument("--unstretched", action="store_true", help="also read without stretching the levels")
    p.add_argument("--unbalanced", action="store_true", help="also read without balancing the colour")
    p.add_argument("--unwidened", action="store_true", help="also read without widening narrow digits")
    p.add_argument("--plain", action="store_true", help="also read with every photo step off")
    p.add_argument("--plot", type=Path, help="write the counts against the level to this PNG")
    args = p.parse_args(argv)
    names = checkpoint_names(p, args)
    levels = {kind: getattr(args, kind) for kind in LEVELS if getattr(args, kind)}
    records, photos = validation_photos(args.images)
    results = {}
    served = list(zip(names, args.checkpoint, strict=True))
    # name, checkpoint, then the photo steps' settings that differ from the defaults
    runs: list[tuple[str, Path, dict[str, float]]] = [(n, c, {}) for n, c in served]
    if args.sharpen is not None:
        sharp = {"sharpen_gate": args.sharpen}
        runs += [(f"{n}, sharpened at {args.sharpen:g}", c, sharp) for n, c in served]
    if args.unstretched:
        runs += [(f"{n}, levels as they are", c, {"levels_gate": 0.0}) for n, c in served]
    if args.unbalanced:
        runs += [(f"{n}, colours as they are", c, {"balance_gate": 0.0}) for n, c in served]
    if args.unwidened:
        unwidened = {"widen_gate": 0.0, "squat_gate": 0.0}
        runs += [(f"{n}, not widened", c, unwidened) for n, c in served]
    if args.plain:
        off = {"grain_threshold": 0.0, "sharpen_gate": 0.0, "levels_gate": 0.0, "balance_gate": 0.0}
        runs += [(f"{n}, photos as they are", c, off) for n, c in served]
    for name, checkpoint, steps in runs:
        predictor = Predictor.load(checkpoint, torch.device("cpu"), **steps)
        predictor.warm_up()
        print(
            f"{len(records)} validation photos, {checkpoint}, {predictor.balance}, {predictor.levels}, "
            f"{predictor.grain}, {predictor.focus}, {predictor.widen}, CPU, {torch.get_num_threads()} threads"
        )
        results[name] = measure(predictor, photos, records, levels)
    if args.plot:
        labels = {kind: KINDS[kind][2] for kind in levels}
        falling = {kind for kind, chosen in levels.items() if max(chosen) < KINDS[kind][1]}
        print(f"wrote {plot_quality(results, labels, len(records), args.plot, falling)}")


if __name__ == "__main__":
    main()
