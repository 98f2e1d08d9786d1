"""A photo's digits stacked one above the other: for measuring how well a number that runs down a post
is read (`benchmarks/bench_columns.py`, experiment 158).

Few SVHN photos show such a number (8 of the 4,845 training photos, none of the 807 validation ones),
so the benchmark makes them: `stack_digits` cuts each labelled digit out of a photo with a little of
its plate around it and stacks the cuts top to bottom, in the number's order, on a canvas of the
plate's colour. The digits keep their own strokes, blur and plate; what changes is their layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from models.boxes import BoxXYXY

PAD = 0.12  # each cut: the digit's box widened by this share of its width (height) on each side
GAP = 0.25  # between cuts, and above the first and below the last: this share of the median cut height


def cut_window(box: BoxXYXY, width: int, height: int, pad: float = PAD) -> tuple[int, int, int, int]:
    """The whole-pixel window [x1, y1, x2, y2) a digit's `box` (xyxy pixels) is cut out by: the box
    widened by `pad` x its width and height on each side, rounded outwards and clipped to the
    `width` x `height` photo."""
    x1, y1, x2, y2 = box
    dx, dy = pad * (x2 - x1), pad * (y2 - y1)
    return (
        max(0, int(np.floor(x1 - dx))),
        max(0, int(np.floor(y1 - dy))),
        min(width, int(np.ceil(x2 + dx))),
        min(height, int(np.ceil(y2 + dy))),
    )


def plate_colour(cuts: Sequence[Image.Image]) -> tuple[int, int, int]:
    """The median RGB of the `cuts`' border pixels (their outermost rows and columns): the plate
    around the digits, for the canvas."""
    rims = []
    for cut in cuts:
        pixels = np.asarray(cut.convert("RGB"))
        rims += [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]
    red, green, blue = (int(v) for v in np.median(np.concatenate(rims), axis=0).round())
    return red, green, blue


def stack_digits(
    photo: Image.Image,
    boxes: Sequence[BoxXYXY],
    pad: float = PAD,
    gap: float = GAP,
    min_width: int = 0,
    aspect: float = 0.0,
) -> tuple[Image.Image, list[BoxXYXY]]:
    """`photo`'s digits, whose `boxes` (xyxy pixels) are given in the number's order, cut out
    (`cut_window`) and stacked top to bottom in that order, each centred across a canvas of their
    `plate_colour`: `gap` x the median cut height between cuts and above and below them, at least
    half the widest cut's width on either side, and the canvas at least `min_width` px wide and at
    least `aspect` x as wide as it is high. The detector sees an image at the scale that brings its
    shorter side to its input size: with `min_width` the photo's height, a narrow column is seen at
    the scale the photo was; with `aspect` the photo's width over its height, the column is framed
    in the photo's shape, its digits smaller the more of them it stacks. Returns the new RGB photo
    and each digit's box in it (xyxy pixels, in the given order). ValueError without a box, or for a
    box with no whole pixel in the photo."""
    if not boxes:
        raise ValueError("no digit to stack")
    photo = photo.convert("RGB")
    windows = [cut_window(box, photo.width, photo.height, pad) for box in boxes]
    if any(x2 <= x1 or y2 <= y1 for x1, y1, x2, y2 in windows):
        raise ValueError("a digit's box has no whole pixel in the photo")
    cuts = [photo.crop(window) for window in windows]
    widest = max(cut.width for cut in cuts)
    space = round(gap * float(np.median([cut.height for cut in cuts])))
    canvas_h = sum(cut.height for cut in cuts) + space * (len(cuts) + 1)
    canvas_w = max(widest + 2 * round(0.5 * widest), min_width, round(aspect * canvas_h))
    canvas = Image.new("RGB", (canvas_w, canvas_h), plate_colour(cuts))
    placed: list[BoxXYXY] = []
    top = space
    for box, window, cut in zip(boxes, windows, cuts, strict=True):
        left = (canvas_w - cut.width) // 2
        canvas.paste(cut, (left, top))
        dx, dy = left - window[0], top - window[1]
        placed.append((box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy))
        top += cut.height + space
    return canvas, placed
