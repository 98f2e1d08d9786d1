"""Sharpening photos out of focus: a photo blurred by 1.5-2 px is read far better after an unsharp mask
(`benchmarks/bench_quality.py`, experiment 138), and a sharp one worse. So the pipeline can measure
how blurred each photo is and sharpen only blurred ones (off unless asked for: see `TUNED_GATE`).

The measure is Crete-Roffet's ("The blur effect", SPIE 2007): blur the luma again with a 9 px box
along rows (and along columns), and see how much of its neighbour-to-neighbour differences survive. A
sharp photo loses many of them to that blur, a blurred one few: 1 minus the share lost, the larger of
the two directions, in [0, 1]. The validation photos measure 0.33-0.66 (98 %; median 0.46), the same
photos blurred by a Gaussian of 1.5 px 0.64 (median), by 2 px 0.70. A smooth background (the colour
noise of the benchmark scenes) counts as blurred too, whatever the digits' focus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from models.grain import central_luma  # measured in the same central window as the grain

_BOX = 9  # px, the re-blur's width


#: the gate chosen on the first 400 validation photos, clean and blurred by 1.5 px (experiment 138): the
#: mask then fires on 23 of the 807 clean photos, but on every photo pasted into a smooth synthetic
#: scene (`training.scenes`), whose smooth backdrop measures as blurred; so it is not on by default
TUNED_GATE = 0.6


@dataclass(frozen=True)
class FocusParams:
    """Photos whose `blur_measure` is at least `gate` get PIL's unsharp mask (`radius` px, `percent`,
    `threshold` grey levels); `gate` 0, the default, turns it off (`TUNED_GATE` turns it on)."""

    gate: float = 0.0
    radius: float = 1.5
    percent: int = 250
    threshold: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.gate <= 1 or self.radius < 0 or self.percent < 0 or self.threshold < 0:
            raise ValueError(f"focus settings out of range (gate in [0, 1], the rest >= 0): {self}")

    @property
    def on(self) -> bool:
        return self.gate > 0 and self.radius > 0 and self.percent > 0


def _moving_mean(g: np.ndarray, axis: int) -> np.ndarray:
    """`g` averaged over a centred `_BOX`-wide window along `axis`, zeros beyond its edges (as
    `np.convolve(..., mode="same")` with a box kernel)."""
    half = _BOX // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half + 1, half)
    summed = np.cumsum(np.pad(g, pad), axis=axis)
    n = g.shape[axis]
    upper = np.take(summed, np.arange(_BOX, _BOX + n), axis=axis)
    lower = np.take(summed, np.arange(0, n), axis=axis)
    return (upper - lower) / _BOX


def blur_measure(pixels: np.ndarray) -> float:
    """Crete-Roffet's blur measure of uint8 RGB `pixels` [H, W, 3] in [0, 1] (larger: more blurred),
    in the central `models.grain.MAX_SIDE` square window at most; 0 for a photo under 2 px either way or
    without any difference between neighbours (nothing to sharpen)."""
    height, width = pixels.shape[:2]
    if height < 2 or width < 2:
        return 0.0
    g = central_luma(pixels, np.float64)
    measures = []
    for axis in (0, 1):
        d_photo = np.abs(np.diff(g, axis=axis))
        d_blurred = np.abs(np.diff(_moving_mean(g, axis), axis=axis))
        total = float(d_photo.sum())
        if total > 0:
            measures.append((total - float(np.maximum(0.0, d_photo - d_blurred).sum())) / total)
    return max(measures, default=0.0)


def sharpen_blurred(pixels: np.ndarray, params: FocusParams) -> np.ndarray:
    """uint8 RGB `pixels` [H, W, 3] as the pipeline reads them: the very array when the photo is not
    blurred enough (`blur_measure` under `params.gate`) or sharpening is off, else a new, writable
    array of the same shape with PIL's unsharp mask applied."""
    if not params.on or blur_measure(pixels) < params.gate:
        return pixels
    mask = ImageFilter.UnsharpMask(params.radius, params.percent, params.threshold)
    return np.array(Image.fromarray(np.ascontiguousarray(pixels)).filter(mask))
