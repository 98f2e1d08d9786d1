"""Synthetic house numbers in the HW2 layout (images + COCO json), for tests and for pretraining.

    python -m training.synth --out data/synth --count 2000 [--valid-fraction 0.1] [--seed 0] [--workers 2] \
        [--fonts machine|bundled]

Numbers of 1-5 digits are drawn with every usable font the machine has (system fonts, fonts shipped with
matplotlib, Pillow's own as the last resort) on plates or textured backgrounds, then warped in
perspective, cropped with jitter, resized, blurred and noised, with non-digit clutter around them. Each
digit is drawn into its own mask as well, so its box follows every warp exactly.

The system fonts differ from machine to machine, so the same seed draws other images elsewhere (but
the same in every checkout on one machine: the fonts are taken in an order that does not depend on
where the checkout or its virtual environment is, `fonts_in`).
`--fonts bundled` draws with matplotlib's own fonts only (DejaVu, STIX, Computer Modern: installed with
the package, the same on every machine), so that a check on synthetic numbers can be repeated anywhere;
the folder's `fonts.json` lists the font files used either way.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

from models.boxes import BoxXYXY, xyxy_to_xywh
from models.labels import coco_categories, digit_to_category_id
from training.exits import run_tool
from training.viewpoint import perspective_coeffs

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
# Fonts that map ASCII digits to symbols or lack them: their "digits" would be mislabelled.
SYMBOL_FONTS = ("cmex", "cmsy", "stixnonuni", "stixsiz", "lastresort", "symbol", "dingbat", "emoji")
CLUTTER_TEXT = ("ST", "AVE", "RD", "No", "APT", "#", "-", "NE", "BLVD", "INC", "&", "A", "B", "C")
LENGTH_WEIGHTS = (15, 40, 30, 12, 3)  # 1..5 digits, roughly as in street-view house numbers
FontSpec = str  # path to a TrueType/OpenType file, or "" for Pillow's built-in font
FONT_SOURCES = ("machine", "bundled")  # every usable font here / matplotlib's own only


@dataclass(frozen=True)
class Sample:
    """One synthetic image and its digits (boxes xyxy in image pixels)."""

    image: Image.Image
    digits: tuple[tuple[int, BoxXYXY], ...]


def _candidate_fonts(source: str) -> list[Path]:
    dirs = [Path(d) for d in FONT_DIRS] if source == "machine" else []
    try:
        import matplotlib

        dirs.append(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf")
    except ImportError:
        if source == "bundled":
            raise ValueError("--fonts bundled needs matplotlib (pip install -e '.[train]')") from None
    return fonts_in(dirs)


def fonts_in(dirs: Sequence[Path]) -> list[Path]:
    """The font files (.ttf, .otf; not the symbol fonts) under `dirs`, ordered by file name, then by
    their folder's place in `dirs`, then by their path inside it: an order that does not depend on where
    the folders are. (By whole path, matplotlib's fonts in a virtual environment under /tmp came before
    /usr/share/fonts and under /work after them, so the same seed drew other images in two checkouts
    on one machine.) In one flat folder, such as matplotlib's (`--fonts bundled`), the order is the
    whole path's, as before."""
    found = [
        (p.name, rank, p.relative_to(folder).as_posix(), p)
        for rank, folder in enumerate(dirs)
        if folder.is_dir()
        for p in folder.rglob("*")
        if p.suffix.lower() in (".ttf", ".otf") and not any(s in p.name.lower() for s in SYMBOL_FONTS)
    ]
    return [p for *_, p in sorted(found)]


def _draws_digits(path: Path) -> bool:
    """True when the font has ten distinct, inked digit glyphs unlike its missing-glyph box."""
    try:
        font = ImageFont.truetype(str(path), 32)
    except OSError:
        return False
    masks = []
    for ch in [*"0123456789", "\ue000"]:
        img = Image.new("L", (48, 48))
        ImageDraw.Draw(img).text((4, 4), ch, font=font, fill=255)
        masks.append(img.tobytes())
    return all(any(m) for m in masks[:10]) and len(set(masks)) == 11


@cache
def find_fonts(source: str = "machine") -> tuple[FontSpec, ...]:
    """Every font here that draws real digits (`source` "machine"; "bundled": matplotlib's own
    only, the same on every machine), or Pillow's built-in font when there is none. Raises
    ValueError for another `source`."""
    if source not in FONT_SOURCES:
        raise ValueError(f"no font source {source!r}: one of {', '.join(FONT_SOURCES)}")
    usable = tuple(str(p) for p in _candidate_fonts(source) if _draws_digits(p))
    return usable or ("",)


def _font(spec: FontSpec, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(spec, size) if spec else ImageFont.load_default(size=size)


def _colours(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Plate and ink colours with a clear luminance difference; often muted, as street signs are."""
    saturation = rng.choice([0.15, 0.4, 1.0])
    while True:
        plate, ink = (_muted(tuple(rng.randrange(256) for _ in range(3)), saturation) for _ in range(2))
        if abs(sum(plate) - sum(ink)) / 3 > 70:
            return plate, ink


def _muted(rgb: tuple[int, ...], saturation: float) -> tuple[int, int, int]:
    grey = sum(rgb) / 3
    r, g, b = (int(grey + (c - grey) * saturation) for c in rgb)
    return r, g, b


def _background(rng: random.Random, size: tuple[int, int], plate: tuple[int, int, int]) -> Image.Image:
    """A plate colour with a gradient, blotchy texture and random lines/rectangles."""
    w, h = size
    base = np.ones((h, w, 3), np.float32) * np.array(plate, np.float32)
    gradient = np.linspace(-1, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
    gradient = gradient[None, :, None] if gradient.size == w else gradient[:, None, None]
    base += gradient * rng.uniform(0, 40)
    texture = np.asarray(
        Image.fromarray(
            np.uint8(
                np.random.default_rng(rng.randrange(2**32)).integers(
                    0, 255, (max(h // 8, 2), max(w // 8, 2), 3)
                )
            )
        ).resize((w, h), Image.Resampling.BICUBIC),
        np.float32,
    )
    base += (texture - 127) * rng.uniform(0, 0.35)
    img = Image.fromarray(np.uint8(base.clip(0, 255)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randrange(4)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        x0, y0 = rng.randrange(w), rng.randrange(h)
        if rng.random() < 0.5:
            draw.line((x0, y0, rng.randrange(w), rng.randrange(h)), fill=colour, width=rng.randrange(1, 4))
        else:
            draw.rectangle(
                (x0, y0, x0 + rng.randrange(w // 3 + 2), y0 + rng.randrange(h // 3 + 2)), outline=colour
            )
    return img


def _layout(
    rng: random.Random, number: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, size: int
) -> tuple[list[tuple[float, float]], tuple[int, int], int]:
    """Glyph origins and the canvas size; digits side by side with random spacing and baseline jitter."""
    margin = int(size * rng.uniform(0.6, 1.4))
    spacing = size * rng.uniform(-0.04, 0.25)
    x, origins = float(margin), []
    for ch in number:
        origins.append((x, margin + rng.uniform(-0.06, 0.06) * size))
        x += font.getlength(ch) + spacing
    return origins, (int(x + margin), int(size * 1.3 + 2 * margin)), margin


def _warp(images: list[Image.Image], rng: random.Random, strength: float) -> list[Image.Image]:
    w, h = images[0].size
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [
        (x + rng.uniform(-strength, strength) * w * 0.5, y + rng.uniform(-strength, strength) * h)
        for x, y in corners
    ]
    coeffs = perspective_coeffs(corners, moved)
    return [
        im.transform(im.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR) for im in images
    ]


def _clutter(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    canvas: tuple[int, int],
    margin: int,
    spec: FontSpec,
    ink: tuple[int, int, int],
) -> None:
    """Non-digit text in the margins: neighbouring signage, never an unlabelled digit."""
    for _ in range(rng.randrange(3)):
        font = _font(spec, max(8, int(margin * rng.uniform(0.3, 0.7))))
        x = rng.choice([rng.uniform(0, margin * 0.3), canvas[0] - margin * rng.uniform(0.4, 0.9)])
        draw.text((x, rng.uniform(0, canvas[1] * 0.8)), rng.choice(CLUTTER_TEXT), font=font, fill=ink)


def render_sample(seed: int, fonts: Sequence[FontSpec] | None = None) -> Sample:
    """Draw one synthetic house number; the same seed gives the same image."""
    rng = random.Random(seed)
    spec = rng.choice(list(fonts or find_fonts()))
    size = rng.randrange(28, 72)
    font = _font(spec, size)
    number = "".join(str(rng.randrange(10)) for _ in range(rng.choices(range(1, 6), LENGTH_WEIGHTS)[0]))
    origins, canvas_size, margin = _layout(rng, number, font, size)
    plate, ink = _colours(rng)
    canvas = _background(rng, canvas_size, plate)
    draw = ImageDraw.Draw(canvas)
    _clutter(draw, rng, canvas_size, margin, spec, ink)
    masks = []
    stroke = rng.choice([0, 0, 0, 1, 2])
    for ch, origin in zip(number, origins, strict=True):
        draw.text(origin, ch, font=font, fill=ink, stroke_width=stroke, stroke_fill=ink)
        mask = Image.new("L", canvas_size)
        ImageDraw.Draw(mask).text(origin, ch, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        masks.append(mask)
    canvas, *masks = _warp([canvas, *masks], rng, rng.uniform(0, 0.12))
    return _finish(rng, canvas, masks, number)


def _finish(rng: random.Random, canvas: Image.Image, masks: list[Image.Image], number: str) -> Sample:
    """Crop around the digits with jitter, resize to a street-view size, blur and add noise."""
    boxes = [m.point(lambda v: 255 if v > 96 else 0).getbbox() for m in masks]
    if any(b is None for b in boxes):  # a glyph warped away: draw again
        return render_sample(rng.randrange(2**31))
    x1 = min(b[0] for b in boxes if b)
    y1 = min(b[1] for b in boxes if b)
    x2 = max(b[2] for b in boxes if b)
    y2 = max(b[3] for b in boxes if b)
    text_h = y2 - y1
    pad_y = text_h * (1 / rng.uniform(0.4, 0.9) - 1) / 2
    crop = (
        max(0, int(x1 - text_h * rng.uniform(0.1, 1.0))),
        max(0, int(y1 - pad_y * rng.uniform(0.5, 1.5))),
        min(canvas.width, int(x2 + text_h * rng.uniform(0.1, 1.0))),
        min(canvas.height, int(y2 + pad_y * rng.uniform(0.5, 1.5))),
    )
    image = canvas.crop(crop)
    scale = rng.uniform(24, 120) / image.height
    out_size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    image = image.resize(out_size, Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(rng.uniform(0, 1.2))
    )
    pixels = np.asarray(image, np.float32) + np.random.default_rng(rng.randrange(2**32)).normal(
        0, rng.uniform(0, 10), (out_size[1], out_size[0], 3)
    )
    image = Image.fromarray(np.uint8(pixels.clip(0, 255)))
    sx, sy = out_size[0] / (crop[2] - crop[0]), out_size[1] / (crop[3] - crop[1])
    digits = tuple(
        (
            int(ch),
            ((b[0] - crop[0]) * sx, (b[1] - crop[1]) * sy, (b[2] - crop[0]) * sx, (b[3] - crop[1]) * sy),
        )
        for ch, b in zip(number, boxes, strict=True)
        if b
    )
    return Sample(image=image, digits=digits)


def _write_one(task: tuple[int, int, str, str]) -> tuple[int, str, int, int, list[tuple[int, list[float]]]]:
    image_id, seed, folder, fonts = task
    sample = render_sample(seed, find_fonts(fonts))
    name = f"{image_id}.png"
    sample.image.save(Path(folder) / name)
    rows = [(digit, [round(v, 2) for v in xyxy_to_xywh(box)]) for digit, box in sample.digits]
    return image_id, name, sample.image.width, sample.image.height, rows


def write_split(
    out: Path, split: str, ids: Sequence[int], seed: int, workers: int, fonts: str = "machine"
) -> Path:
    """Render images `ids` into out/split/ with the fonts of `fonts` (`find_fonts`) and write
    out/split.json (HW2 conventions)."""
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [(i, seed * 1_000_003 + i, str(folder), fonts) for i in ids]
    find_fonts(fonts)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_write_one, tasks, chunksize=16), total=len(tasks), desc=split))
    else:
        results = [_write_one(t) for t in tqdm(tasks, desc=split)]
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for image_id, name, width, height, rows in results:
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for digit, bbox in rows:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "bbox": bbox,
                    "category_id": digit_to_category_id(digit),
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    doc = {"images": images, "annotations": annotations, "categories": coco_categories()}
    path = out / f"{split}.json"
    path.write_text(json.dumps(doc) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--count", required=True, type=int, help="images in train + valid")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--test-count", type=int, default=0, help="extra unlabelled images in test/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--fonts",
        choices=FONT_SOURCES,
        default="machine",
        help="machine: every usable font here (default); bundled: matplotlib's own only, the same everywhere",
    )
    args = p.parse_args(argv)
    n_valid = max(1, round(args.count * args.valid_fraction)) if args.count > 1 else 0
    ids = list(range(1, args.count + 1))
    write_split(args.out, "train", ids[n_valid:], args.seed, args.workers, args.fonts)
    if n_valid:
        write_split(args.out, "valid", ids[:n_valid], args.seed, args.workers, args.fonts)
    if args.test_count:
        test_ids = list(range(args.count + 1, args.count + args.test_count + 1))
        write_split(args.out, "test", test_ids, args.seed, args.workers, args.fonts)
        (args.out / "test.json").unlink()  # the HW2 test split has no labels
    fonts = find_fonts(args.fonts)
    names = [Path(f).name if f else "Pillow's built-in font" for f in fonts]
    doc = {"source": args.fonts, "seed": args.seed, "fonts": names}
    (args.out / "fonts.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"fonts: {len(fonts)} ({args.fonts}); wrote {args.count + args.test_count} images to {args.out}")
    return args.out


if __name__ == "__main__":
    run_tool(main)
