"""The photo as the pipeline reads it: a narrow-contrast one stretched (`models.levels`, experiment
154); then a grainy one smoothed (`models.grain`, experiment 136), else a blurred one sharpened where
that is on (`models.focus`, experiment 138). The stretch comes first, so that the grain is measured
(and smoothed) as the stretch leaves it; smoothing excludes sharpening, which would bring the grain
back."""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from models.focus import FocusParams, sharpen_blurred
from models.grain import GrainParams, smooth_grain
from models.levels import LevelsParams, stretch_levels

Step = Literal["levels", "grain", "focus"]


class PhotoParams(NamedTuple):
    """Every step's settings, passed as one (a tuple, so that it unpacks as grain, focus, levels);
    the defaults are the modules' own: stretching and smoothing on, sharpening off."""

    grain: GrainParams = GrainParams()
    focus: FocusParams = FocusParams()
    levels: LevelsParams = LevelsParams()

    @property
    def on(self) -> bool:
        """Whether any step may change a photo."""
        return self.grain.on or self.focus.on or self.levels.on


def photo_params(
    grain_threshold: float | None = None, sharpen_gate: float | None = None, levels_gate: float | None = None
) -> PhotoParams:
    """The steps' settings from a service setting or an evaluator flag each: None keeps
    `models.grain`'s, `models.focus`' and `models.levels`' defaults, 0 turns a step off."""
    grain = GrainParams() if grain_threshold is None else GrainParams(threshold=grain_threshold)
    focus = FocusParams() if sharpen_gate is None else FocusParams(gate=sharpen_gate)
    levels = LevelsParams() if levels_gate is None else LevelsParams(gate=levels_gate)
    return PhotoParams(grain, focus, levels)


def prepare_photo(pixels: np.ndarray, params: PhotoParams) -> tuple[np.ndarray, tuple[Step, ...]]:
    """uint8 RGB `pixels` [H, W, 3] -> (the pixels to read, a new array where a step changed them;
    the steps that did, in order: "levels", then "grain" or "focus"; () for none)."""
    grain, focus, levels = params
    stretched = stretch_levels(pixels, levels)
    steps: tuple[Step, ...] = () if stretched is pixels else ("levels",)
    smoothed = smooth_grain(stretched, grain)
    if smoothed is not stretched:
        return smoothed, (*steps, "grain")
    sharpened = sharpen_blurred(stretched, focus)
    return sharpened, steps if sharpened is stretched else (*steps, "focus")
