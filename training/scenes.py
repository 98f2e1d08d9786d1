"""Digit-free scenes around a photo: for measuring how well numbers that fill little of a large photo
are read (`benchmarks/bench_scenes.py`, `docs/search_examples.py`).

The real validation photos are crops around their numbers; a user's photo of a house front is not.
`place_in_scene` pastes a photo, at its own size and pixel for pixel, at a random place of a backdrop
`factor` times as wide and high: smooth colour noise around the photo's mean colour, with no digits
and no edges for the detector to mistake for them. `place_in_strip` pastes it into a backdrop as high
as the photo and `aspect` times as wide as that: a long, narrow photo, such as a crop of a panorama.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

BACKDROP_GRID = (6, 8)  # rows x columns of random colours, smoothly interpolated
BACKDROP_SD = 40.0  # per channel, around the photo's mean colour


def backdrop(photo: Image.Image, width: int, height: int, rng: random.Random) -> Image.Image:
    """A `width` x `height` RGB scene with no digits: a grid of colours around `photo`'s mean colour
    (sd `BACKDROP_SD` per channel), bicubically interpolated."""
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0.0, BACKDROP_SD, (*BACKDROP_GRID, 3))
    grid = np.asarray(photo.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) + noise
    small = Image.fromarray(grid.clip(0, 255).astype(np.uint8))
    return small.resize((width, height), Image.Resampling.BICUBIC)


def place_in_scene(
    photo: Image.Image, factor: int, rng: random.Random
) -> tuple[Image.Image, tuple[int, int]]:
    """`photo` (RGB) pasted at its own size into a `backdrop` `factor` times its width and height, at a
    random place drawn from `rng`; returns the scene and the photo's top-left corner (x, y) in it. A
    factor of 1 returns the photo itself at (0, 0)."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if factor == 1:
        return photo, (0, 0)
    width, height = photo.size
    scene = backdrop(photo, width * factor, height * factor, rng)
    corner = rng.randrange(width * (factor - 1) + 1), rng.randrange(height * (factor - 1) + 1)
    scene.paste(photo.convert("RGB"), corner)
    return scene, corner


def place_in_strip(
    photo: Image.Image, aspect: float, rng: random.Random
) -> tuple[Image.Image, tuple[int, int]]:
    """`photo` (RGB) pasted at its own size into a `backdrop` as high as it and `aspect` times as wide
    as high (rounded; never narrower than the photo), at a random place along it drawn from `rng`;
    returns the strip and the photo's top-left corner (x, 0) in it."""
    if aspect <= 0:
        raise ValueError(f"aspect must be > 0, got {aspect}")
    width, height = photo.size
    strip_width = max(width, round(aspect * height))
    if strip_width == width:
        return photo, (0, 0)
    strip = backdrop(photo, strip_width, height, rng)
    corner = rng.randrange(strip_width - width + 1), 0
    strip.paste(photo.convert("RGB"), corner)
    return strip, corner
