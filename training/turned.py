"""Photos turned by a few degrees, and the same photos framed alike but upright: for measuring how well a
turned house number is read (`benchmarks/bench_turned.py`).

A photo turned by `turn_photo` grows (nothing is cut) and its new corners take the photo's mean colour,
so its digits fill less of it. `frame_alike` gives the upright photo that same canvas, so that what the
turn itself costs can be told from what the larger frame costs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def mean_colour(photo: Image.Image) -> tuple[int, int, int]:
    """`photo`'s mean RGB colour, each channel rounded to an int in [0, 255]."""
    pixels = np.asarray(photo.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    red, green, blue = (round(float(v)) for v in pixels.mean(axis=0))
    return red, green, blue


def turn_photo(photo: Image.Image, degrees: float) -> Image.Image:
    """`photo` (RGB) turned `degrees` counter-clockwise (negative: clockwise) about its centre, bilinear,
    on a canvas expanded to hold all of it; the corners the turn uncovers take its `mean_colour`. 0
    degrees returns the photo unchanged."""
    photo = photo.convert("RGB")
    if degrees == 0:
        return photo
    return photo.rotate(
        degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=mean_colour(photo)
    )


def frame_alike(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`photo` (RGB), unturned and pixel for pixel, at the centre of a canvas of `size` (width, height)
    filled with its `mean_colour`: the frame `turn_photo` gives it, without the turn. ValueError when
    `size` is smaller than the photo either way."""
    photo = photo.convert("RGB")
    width, height = size
    if width < photo.width or height < photo.height:
        raise ValueError(f"a {photo.width} x {photo.height} photo does not fit a {width} x {height} frame")
    canvas = Image.new("RGB", (width, height), mean_colour(photo))
    canvas.paste(photo, ((width - photo.width) // 2, (height - photo.height) // 2))
    return canvas


def signed_turn(image_id: int, degrees: float) -> float:
    """The turn a benchmark gives photo `image_id`: `degrees` counter-clockwise for even ids, clockwise
    for odd ones, so that a split is turned both ways about equally and the same way every run."""
    return degrees if image_id % 2 == 0 else -degrees
