"""The photo as the pipeline reads it: a grainy one smoothed (`models.grain`, experiment 136), else a
blurred one sharpened where that is on (`models.focus`, experiment 138), else the photo as it is.
Smoothing comes first and excludes sharpening, which would bring the grain back."""

from __future__ import annotations

from typing import Literal

import numpy as np

from models.focus import FocusParams, sharpen_blurred
from models.grain import GrainParams, smooth_grain

Step = Literal["grain", "focus"]


def photo_params(
    grain_threshold: float | None = None, sharpen_gate: float | None = None
) -> tuple[GrainParams, FocusParams]:
    """The two steps' settings from a service setting or an evaluator flag each: None keeps
    `models.grain`'s and `models.focus`' defaults (smoothing on, sharpening off), 0 turns a step off."""
    grain = GrainParams() if grain_threshold is None else GrainParams(threshold=grain_threshold)
    focus = FocusParams() if sharpen_gate is None else FocusParams(gate=sharpen_gate)
    return grain, focus


def prepare_photo(
    pixels: np.ndarray, grain: GrainParams, focus: FocusParams
) -> tuple[np.ndarray, Step | None]:
    """uint8 RGB `pixels` [H, W, 3] -> (the pixels to read, a new array where a step changed them;
    which step did: "grain", "focus" or None)."""
    smoothed = smooth_grain(pixels, grain)
    if smoothed is not pixels:
        return smoothed, "grain"
    sharpened = sharpen_blurred(pixels, focus)
    return sharpened, None if sharpened is pixels else "focus"
