"""Levels stretched: a photo taken at dusk or through haze, its contrast squeezed into a few dozen grey
levels, is read far better with its levels stretched apart (`benchmarks/bench_quality.py --dark --haze`,
experiment 154). Stretched, photos of ordinary contrast read about as well, at a little mAP. So the
pipeline measures each photo's spread of luma and stretches only narrow ones.

The spread is the distance between the 1st and the 99th percentile of the luma (ITU-R 601), in grey
levels, in the same central window as the grain (`models.grain.central_luma`). Of the validation
photos, the 1st percentile measures 51, the 5th 64 and the median 119. The same photos 5 stops
underexposed or behind a veil of 85 % all measure under 50; 4 stops or 70 %, 98 % of them under 64.
A photo under the gate has every channel stretched by one gain about the middle of its spread (so
its hues stay), from the spread it has to one that grows to `target` as its spread falls to 0 and
meets its own spread at the gate, so that a photo just under the gate is changed hardly at all; the
middle moves only as far as keeps the stretched spread within 0-255.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.grain import central_luma

#: the percentiles of the luma whose distance is the spread: the darkest and the lightest 1 % of the
#: pixels (specks, glints, a black border) do not count
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0


@dataclass(frozen=True)
class LevelsParams:
    """Photos whose luma spread (`luma_spread`) is under `gate` grey levels are stretched towards
    `target` levels apart, by a gain of at most `max_gain`; `gate` 0 turns it off. The defaults were
    chosen on the 807 validation photos, clean, 3-5 stops underexposed and behind a veil of 50-85 %
    (experiment 154). The gate touches 40 clean photos (5 %): the split reads the same 697 numbers, at
    mAP 0.0004 lower. A gate of 96 reads 4 more of the photos behind a veil of 50 % and of 85 %, but
    touches 220 clean photos and costs 0.0015 mAP."""

    gate: float = 64.0
    target: float = 224.0
    max_gain: float = 8.0

    def __post_init__(self) -> None:
        if not 0 <= self.gate <= 255 or not 0 < self.target <= 255 or self.max_gain < 1:
            raise ValueError(
                f"levels settings out of range (gate 0-255, target 1-255, max_gain >= 1): {self}"
            )

    @property
    def on(self) -> bool:
        return self.gate > 0 and self.max_gain > 1

    def gain(self, spread: float) -> float:
        """The gain for a photo of luma `spread` grey levels: 1 at or over the gate (or when off), else
        the one that makes its spread `spread` + (`target` - `spread`) x (1 - `spread` / `gate`), at most
        `max_gain`."""
        if not self.on or spread >= self.gate:
            return 1.0
        wanted = spread + max(self.target - spread, 0.0) * (1.0 - spread / self.gate)
        return min(self.max_gain, wanted / max(spread, 1e-6))


def luma_spread(pixels: np.ndarray) -> tuple[float, float]:
    """(low, high): the `LOW_PERCENTILE` and `HIGH_PERCENTILE` of the luma of uint8 RGB `pixels`
    [H, W, 3] in their central window (`models.grain.central_luma`), in grey levels; (0, 0) for an
    empty photo."""
    g = central_luma(pixels)
    if g.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(g, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return float(low), float(high)


def stretch_levels(pixels: np.ndarray, params: LevelsParams) -> np.ndarray:
    """uint8 RGB `pixels` [H, W, 3] as the pipeline reads them: the very array when their luma spread
    is at least `params.gate` (or stretching is off) or under one grey level (a flat photo: nothing to
    stretch), else a new uint8 array of the same shape, every channel mapped by out = (in - middle) x
    gain + new middle (in float32, rounded, clipped to 0-255; through a table of the 256 grey levels),
    where middle is the mid-point of the spread and the new one that mid-point moved just enough to
    keep the stretched spread within 0-255."""
    if not params.on:
        return pixels
    low, high = luma_spread(pixels)
    gain = params.gain(high - low)
    if gain == 1.0 or high - low < 1.0:
        return pixels
    middle = (low + high) / 2
    half = (high - low) * gain / 2
    new_middle = min(max(middle, half), 255.0 - half)
    levels = np.arange(256, dtype=np.float32)
    mapped = (levels - np.float32(middle)) * np.float32(gain) + np.float32(new_middle)
    table = np.clip(np.rint(mapped), 0, 255).astype(np.uint8)
    return table[pixels]  # a look-up per pixel: ~10 x faster than the arithmetic on a phone photo
