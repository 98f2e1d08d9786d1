"""How often a letter or mark beside a house number is read as a digit ("12A" read 124, "N°53" 053).

    python benchmarks/bench_marks.py [--checkpoint DIR] [--images 807] [--fonts STIX] [--seed 0]

Each validation photo with room beside its number gets one mark (`training.marks.paste_mark`: a letter
A-H or a-f or BIS or TER after the number three times in four, else N°, No or # before it, in the
digits' ink and at 0.55-1.0 of their height, blurred by up to a tenth of it), drawn with Python's
`random.Random(seed)`, in fonts that training never draws with (`--fonts`: matplotlib's STIX by
default; training's marks use DejaVu). It prints how many of those photos the service reads right
without and with the mark (`Predictor.detect` and the number assembly, the rule of
`training.evaluate`), how many right readings the mark breaks and into what, and the marks that
broke them. Needs ../shared/data/svhn-hw2; the checkpoint is the shipped one unless `--checkpoint`
says otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import load_coco_split  # noqa: E402
from training.marks import (  # noqa: E402
    BLUR_MAX,
    GAP,
    HEIGHT,
    PREFIXES,
    SUFFIX_SHARE,
    SUFFIXES,
    MarkChoice,
    mark_fonts,
    paste_mark,
)

DATA = REPO.parent / "shared" / "data" / "svhn-hw2"


def draw_choice(rng: random.Random, fonts: tuple[str, ...]) -> MarkChoice:
    """One mark's choices, over the ranges training draws from (`training.marks.MarkBeside`)."""
    suffix = rng.random() < SUFFIX_SHARE
    return MarkChoice(
        text=rng.choice(SUFFIXES if suffix else PREFIXES),
        font_path=rng.choice(fonts),
        suffix=suffix,
        height=rng.uniform(HEIGHT[0], HEIGHT[0] + HEIGHT[1]),
        gap=rng.uniform(GAP[0], GAP[0] + GAP[1]),
        blur=rng.uniform(0.0, BLUR_MAX),
    )


def read(predictor: Predictor, image: torch.Tensor) -> int:
    """The number `predictor` reads in `image` (FloatTensor[3, H, W] in [0, 1]); -1 for none."""
    pixels = (image * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return predictor.assemble(predictor.detect([pixels])[0].sites).value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    p.add_argument("--images", type=int, default=807)
    p.add_argument("--fonts", default="STIX", help="matplotlib font family (file name prefix)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (DATA / "valid.json").is_file():
        sys.exit(f"needs the real validation split in {DATA}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    records = load_coco_split(DATA / "valid", DATA / "valid.json")[0][: args.images]
    fonts = mark_fonts(args.fonts)
    predictor = Predictor.load(args.checkpoint, torch.device("cpu"))
    predictor.warm_up()
    rng = random.Random(args.seed)
    marked = plain_right = marked_right = broken = mended = 0
    broken_by: Counter[str] = Counter()
    broken_into: Counter[str] = Counter()
    for record in records:
        image = F.pil_to_tensor(Image.open(record.path).convert("RGB")).float() / 255
        boxes = torch.tensor([b.box_xyxy for b in record.boxes], dtype=torch.float32).reshape(-1, 4)
        choice = draw_choice(rng, fonts)
        with_mark = paste_mark(image, boxes, choice)
        if with_mark is None:
            continue
        marked += 1
        alone, beside = read(predictor, image), read(predictor, with_mark)
        plain_right += alone == record.number
        marked_right += beside == record.number
        if alone == record.number != beside:
            broken += 1
            broken_by[choice.text] += 1
            longer = len(str(beside)) > len(str(record.number))
            broken_into["a digit longer" if longer else "otherwise"] += 1
        mended += alone != record.number == beside
    print(f"{args.checkpoint}, {args.fonts} fonts ({len(fonts)}), seed {args.seed}, CPU")
    print(f"photos with room for a mark: {marked} of {len(records)}")
    print(f"read right without the mark: {plain_right}; with it: {marked_right}")
    print(f"right readings the mark breaks: {broken} ({dict(broken_into)}); wrong ones it mends: {mended}")
    print("marks that broke a reading:", dict(broken_by.most_common()))


if __name__ == "__main__":
    main()
