"""Photos made worse the ways a phone or a street camera makes them worse (compressed, far away, blurred,
grainy, smeared, under- or overexposed, half in shadow, hazy, under a street lamp, seen at an angle): for
measuring how well a house number is read from a poor photo (`benchmarks/bench_quality.py`).

Each kind takes an RGB photo and a level and returns a new RGB photo; level 0 (or 1 for `shrink`, 100
for `jpeg`) leaves the photo as it is. Where a kind draws random numbers (`noise`), it takes a seed, so
that a benchmark gives the same photo the same grain every run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Final

import numpy as np
from PIL import Image, ImageFilter

from models.srgb import to_linear, to_srgb
from training.viewpoint import seen_from


def jpeg(photo: Image.Image, quality: float, seed: int = 0) -> Image.Image:
    """`photo` saved as a JPEG of `quality` (1-95, PIL's scale, 4:2:0 chroma) and read back; 100 returns
    it unchanged. `seed` is unused (every kind takes one)."""
    photo = photo.convert("RGB")
    if quality >= 100:
        return photo
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be 1-95 (or 100 for none), not {quality}")
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=round(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def shrink(photo: Image.Image, factor: float, seed: int = 0) -> Image.Image:
    """`photo` resized to `factor` (0 < factor <= 1) of its width and height, rounded, at least 1 px,
    bicubic with PIL's antialiasing: the same number photographed from 1 / `factor` times as far.
    `seed` is unused."""
    photo = photo.convert("RGB")
    if not 0 < factor <= 1:
        raise ValueError(f"a shrink factor must be in (0, 1], not {factor}")
    if factor == 1:
        return photo
    size = (max(1, round(photo.width * factor)), max(1, round(photo.height * factor)))
    return photo.resize(size, Image.Resampling.BICUBIC)


def blur(photo: Image.Image, radius: float, seed: int = 0) -> Image.Image:
    """`photo` under a Gaussian blur of standard deviation `radius` px (>= 0): out of focus or shaken.
    `seed` is unused."""
    photo = photo.convert("RGB")
    if radius < 0:
        raise ValueError(f"a blur radius must be >= 0, not {radius}")
    return photo if radius == 0 else photo.filter(ImageFilter.GaussianBlur(radius))


def noise(photo: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """`photo` with Gaussian grain of standard deviation `sigma` (in 0-255 grey levels, >= 0), drawn
    independently for each pixel and channel from `seed`, clipped to [0, 255]: a photo taken in poor
    light."""
    photo = photo.convert("RGB")
    if sigma < 0:
        raise ValueError(f"a noise sigma must be >= 0, not {sigma}")
    if sigma == 0:
        return photo
    pixels = np.asarray(photo, dtype=np.float32)
    grain = np.random.default_rng(seed).normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels + grain), 0, 255).astype(np.uint8))


def _in_light(photo: Image.Image, gains: float | np.ndarray) -> Image.Image:
    """`photo` (RGB) with its linear light scaled by `gains` (one, or one per channel) and stored again in
    8 bits, clipped at white (`models.srgb`)."""
    return Image.fromarray(to_srgb(to_linear(np.asarray(photo)) * gains))


def dark(photo: Image.Image, stops: float, seed: int = 0) -> Image.Image:
    """`photo` underexposed by `stops` (>= 0): its linear light halved `stops` times and stored again in
    8 bits, so that the shadows lose their grey levels as a camera's would at dusk. `seed` is unused."""
    photo = photo.convert("RGB")
    if stops < 0:
        raise ValueError(f"underexposure must be >= 0 stops, not {stops}")
    return photo if stops == 0 else _in_light(photo, 2.0**-stops)


def bright(photo: Image.Image, stops: float, seed: int = 0) -> Image.Image:
    """`photo` overexposed by `stops` (>= 0): its linear light doubled `stops` times and clipped at
    white, so that light surfaces burn out (sun on a white wall). `seed` is unused."""
    photo = photo.convert("RGB")
    if stops < 0:
        raise ValueError(f"overexposure must be >= 0 stops, not {stops}")
    return photo if stops == 0 else _in_light(photo, 2.0**stops)


def motion(photo: Image.Image, length: float, seed: int = 0) -> Image.Image:
    """`photo` smeared sideways over `length` px (a whole number >= 0; 0 and 1 leave it): each pixel
    the mean of the `length` pixels about it along its row, the edges repeated, as a camera panning
    past the house (a street-view car) smears it. `seed` is unused."""
    photo = photo.convert("RGB")
    if length < 0 or length != int(length):
        raise ValueError(f"a motion length must be a whole number of px >= 0, not {length}")
    steps = int(length)
    if steps <= 1:
        return photo
    pixels = np.asarray(photo, dtype=np.float64)
    padded = np.pad(pixels, ((0, 0), (steps // 2, steps - 1 - steps // 2), (0, 0)), mode="edge")
    sums = np.cumsum(np.pad(padded, ((0, 0), (1, 0), (0, 0))), axis=1)
    smeared = (sums[:, steps:] - sums[:, :-steps]) / steps
    return Image.fromarray(np.clip(np.rint(smeared), 0, 255).astype(np.uint8))


def shadow(photo: Image.Image, stops: float, seed: int = 0) -> Image.Image:
    """`photo` half in shadow: the part left of a line through its centre, from 40 % of its width at
    the top to 60 % at the bottom, has its linear light halved `stops` (>= 0) times and is stored
    again in 8 bits, so that a hard shadow edge crosses the number (a wall's or an awning's). `seed`
    is unused."""
    return shadow_across(photo, stops, 0.4, 0.6)


def shadow_across(
    photo: Image.Image, stops: float, top: float, bottom: float, left: bool = True
) -> Image.Image:
    """`photo` with a hard shadow edge along the line from `top` x its width at its top row to `bottom` x
    its width at its bottom one (shares, any real numbers: the line may leave the photo), the part
    `left` of it (else right of it) with its linear light halved `stops` (>= 0) times, stored again in 8
    bits. `shadow` is the line from 0.4 to 0.6, the left part dark."""
    photo = photo.convert("RGB")
    if stops < 0:
        raise ValueError(f"a shadow must be >= 0 stops deep, not {stops}")
    if stops == 0:
        return photo
    height, width = photo.height, photo.width
    rows, columns = np.mgrid[0:height, 0:width]
    edge = width * (top + (bottom - top) * (rows + 0.5) / height)
    dark_side = columns + 0.5 < edge if left else columns + 0.5 >= edge
    gains = np.where(dark_side, 2.0**-stops, 1.0)[..., None]
    return _in_light(photo, gains)


#: the grey of the veil `haze` lays over a photo (a bright, slightly blue-white sky)
VEIL: Final[tuple[int, int, int]] = (225, 230, 235)


def haze(photo: Image.Image, amount: float, seed: int = 0) -> Image.Image:
    """`photo` behind a veil (fog, glare on glass, a smeared lens): each pixel mixed with `VEIL` by
    `amount` (0-1; 0 leaves it, 1 leaves only the veil), so that every contrast falls to 1 - `amount`
    of itself. `seed` is unused."""
    photo = photo.convert("RGB")
    if not 0 <= amount < 1:
        raise ValueError(f"a haze amount must be in [0, 1), not {amount}")
    if amount == 0:
        return photo
    pixels = np.asarray(photo, dtype=np.float64)
    veiled = pixels * (1 - amount) + np.asarray(VEIL, dtype=np.float64) * amount
    return Image.fromarray(np.rint(veiled).astype(np.uint8))


#: the share of each channel's linear light a sodium street lamp leaves, next to daylight:
#: an orange cast with almost no blue (tungsten is close to half of it: `SODIUM` ** 0.5)
SODIUM: Final[tuple[float, float, float]] = (1.0, 0.55, 0.15)


def sodium(photo: Image.Image, share: float, seed: int = 0) -> Image.Image:
    """`photo` lit by a street lamp: each channel's linear light scaled by `SODIUM` ** `share` (0-1; 0
    leaves it, 1 is sodium light, 0.5 about tungsten) and stored again in 8 bits. `seed` is unused."""
    photo = photo.convert("RGB")
    if not 0 <= share <= 1:
        raise ValueError(f"a sodium share must be in [0, 1], not {share}")
    if share == 0:
        return photo
    return _in_light(photo, np.asarray(SODIUM, dtype=np.float64) ** share)


def oblique(photo: Image.Image, degrees: float, seed: int = 0) -> Image.Image:
    """`photo` seen from the side of the street: its plate turned `degrees` (0-75) about its upright
    axis (`training.viewpoint.seen_from`, a view `FOV` degrees wide), the right side away from the
    camera for an even `seed`, the left for an odd one, so that a split is seen from both sides. The
    digits come out narrower by about the cosine of the turn, and shorter towards the far side."""
    if not 0 <= degrees <= 75:
        raise ValueError(f"an oblique view must be 0-75 degrees, not {degrees}")
    return seen_from(photo, degrees if seed % 2 == 0 else -degrees)


def below(photo: Image.Image, degrees: float, seed: int = 0) -> Image.Image:
    """`photo` seen from below: its plate turned `degrees` (0-75) about its level axis, the top away from
    the camera (`training.viewpoint.seen_from`), as a number high on a wall is seen from the pavement:
    the digits come out shorter and narrower at the top. `seed` is unused."""
    if not 0 <= degrees <= 75:
        raise ValueError(f"a view from below must be 0-75 degrees, not {degrees}")
    return seen_from(photo, 0.0, degrees)


Degrade = Callable[[Image.Image, float, int], Image.Image]

#: name -> (the function, the level that leaves a photo as it is, what a level is)
KINDS: Final[dict[str, tuple[Degrade, float, str]]] = {
    "jpeg": (jpeg, 100.0, "JPEG quality"),
    "shrink": (shrink, 1.0, "scale"),
    "blur": (blur, 0.0, "Gaussian blur (px)"),
    "noise": (noise, 0.0, "grain (grey levels)"),
    "dark": (dark, 0.0, "underexposure (stops)"),
    "bright": (bright, 0.0, "overexposure (stops)"),
    "haze": (haze, 0.0, "haze (share of veil)"),
    "sodium": (sodium, 0.0, "sodium light (share)"),
    "motion": (motion, 0.0, "motion blur (px)"),
    "shadow": (shadow, 0.0, "shadow (stops)"),
    "oblique": (oblique, 0.0, "seen from the side (degrees)"),
    "below": (below, 0.0, "seen from below (degrees)"),
}


def degrade(photo: Image.Image, kind: str, level: float, seed: int = 0) -> Image.Image:
    """`photo` made worse by `kind` (a key of `KINDS`) at `level`. ValueError for an unknown kind or a
    level out of the kind's range."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind][0](photo, level, seed)
