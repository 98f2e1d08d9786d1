"""The photo as the pipeline reads it: a narrow-contrast one stretched (`models.levels`, experiment
154); then a grainy one smoothed (`models.grain`, experiment 136), else a blurred one sharpened where
that is on (`models.focus`, experiment 138). The stretch comes first, so that the grain is measured
(and smoothed) as the stretch leaves it; smoothing excludes sharpening, which would bring the grain
back."""

from __future__ import annotations

from typing import Literal

import numpy as np

from models.focus import FocusParams, sharpen_blurred
from models.grain import GrainParams, smooth_grain
from models.levels import LevelsParams, stretch_levels

Step = Literal["levels", "grain", "focus"]


def photo_params(
    grain_threshold: float | None = None, sharpen_gate: float | None = None, levels_gate: float | None = None
) -> tuple[GrainParams, FocusParams, LevelsParams]:
    """The three steps' settings from a service setting or an evaluator flag each: None keeps
    `models.grain`'s, `models.focus`' and `models.levels`' defaults (smoothing on, sharpening off,
    stretching on), 0 turns a step off."""
    grain = GrainParams() if grain_threshold is None else GrainParams(threshold=grain_threshold)
    focus = FocusParams() if sharpen_gate is None else FocusParams(gate=sharpen_gate)
    levels = LevelsParams() if levels_gate is None else LevelsParams(gate=levels_gate)
    return grain, focus, levels


def prepare_photo(
    pixels: np.ndarray, grain: GrainParams, focus: FocusParams, levels: LevelsParams
) -> tuple[np.ndarray, tuple[Step, ...]]:
    """uint8 RGB `pixels` [H, W, 3] -> (the pixels to read, a new array where a step changed them;
    the steps that did, in order: "levels", then "grain" or "focus"; () for none)."""
    stretched = stretch_levels(pixels, levels)
    steps: tuple[Step, ...] = () if stretched is pixels else ("levels",)
    smoothed = smooth_grain(stretched, grain)
    if smoothed is not stretched:
        return smoothed, (*steps, "grain")
    sharpened = sharpen_blurred(stretched, focus)
    return sharpened, steps if sharpened is stretched else (*steps, "focus")
