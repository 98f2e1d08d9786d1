"""Grain smoothing: a photo taken in poor light, its digits a few pixels wide, is read far better after a
light Gaussian blur (`benchmarks/bench_quality.py`, experiment 136), and a clean photo worse. So the
pipeline measures each photo's grain and blurs only grainy ones, by a radius that grows with the grain.

The grain is the standard deviation of the photo's luma noise, in grey levels, estimated as J. Immerkaer
("Fast noise variance estimation", CVIU 1996) does from the 3 x 3 kernel that cancels every plane, but
from the median of its absolute response rather than the mean, so that the edges of the digits, few
among the pixels, do not count as noise: a clean validation photo measures 0.2-1.5, one with Gaussian
grain of standard deviation s per channel about 0.67 s (the luma of three independent channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

#: the kernel's response to Gaussian noise of standard deviation 1 has standard deviation 6 (sqrt 36)
#: and median absolute value 0.6745 x 6
_MEDIAN_ABS_PER_SIGMA = 0.6745 * 6.0
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's "L"
MAX_SIDE = 512  # larger photos are measured in a central window this size: grain is the same throughout


@dataclass(frozen=True)
class GrainParams:
    """Photos whose grain (`grain_sigma`) is at least `threshold` grey levels are blurred by a Gaussian
    of radius `per_sigma` x their grain, at most `max_radius` px; `threshold` 0 turns it off. The
    defaults were chosen on the first 400 validation photos with grain added (experiment 136): a clean
    photo measures at most 1.5, one shrunk to a third at most 6.3."""

    threshold: float = 7.0
    per_sigma: float = 0.1
    max_radius: float = 1.0

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.per_sigma < 0 or self.max_radius < 0:
            raise ValueError(f"grain settings must be >= 0: {self}")

    @property
    def on(self) -> bool:
        return self.threshold > 0 and self.per_sigma > 0 and self.max_radius > 0

    def radius(self, sigma: float) -> float:
        """The blur radius (px) for a photo of grain `sigma`; 0 under the threshold or when off."""
        if not self.on or sigma < self.threshold:
            return 0.0
        return min(self.max_radius, self.per_sigma * sigma)


def central_window(pixels: np.ndarray) -> np.ndarray:
    """The central `MAX_SIDE` x `MAX_SIDE` window at most of RGB `pixels` [H, W, 3], a view [h, w, 3]:
    where this module, `models.focus`, `models.levels` and `models.balance` measure a photo."""
    height, width = pixels.shape[:2]
    top, left = max(0, (height - MAX_SIDE) // 2), max(0, (width - MAX_SIDE) // 2)
    return pixels[top : top + MAX_SIDE, left : left + MAX_SIDE, :3]


def central_luma(pixels: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """The luma (ITU-R 601, as PIL's "L", unrounded) of uint8 RGB `pixels` [H, W, 3] in their central
    window (`central_window`), as `dtype` [h, w]."""
    return central_window(pixels).astype(dtype) @ _LUMA.astype(dtype)


def grain_sigma(pixels: np.ndarray) -> float:
    """The luma noise's standard deviation (grey levels) of uint8 RGB `pixels` [H, W, 3], estimated in
    the central `MAX_SIDE` x `MAX_SIDE` window at most; 0 for a photo under 3 px either way."""
    height, width = pixels.shape[:2]
    if height < 3 or width < 3:
        return 0.0
    g = central_luma(pixels)
    response = (
        g[:-2, :-2]
        + g[:-2, 2:]
        + g[2:, :-2]
        + g[2:, 2:]
        - 2 * (g[:-2, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] + g[2:, 1:-1])
        + 4 * g[1:-1, 1:-1]
    )
    return float(np.median(np.abs(response))) / _MEDIAN_ABS_PER_SIGMA


def smooth_grain(pixels: np.ndarray, params: GrainParams) -> np.ndarray:
    """uint8 RGB `pixels` [H, W, 3] as the pipeline reads them: the very array when its grain is under
    `params.threshold` (or smoothing is off), else a new array of the same shape blurred by
    `params.radius(grain)` (PIL's Gaussian blur)."""
    if not params.on:
        return pixels
    radius = params.radius(grain_sigma(pixels))
    if radius == 0:
        return pixels
    blurred = Image.fromarray(np.ascontiguousarray(pixels)).filter(ImageFilter.GaussianBlur(radius))
    return np.array(blurred)  # writable, as torch.from_numpy wants
