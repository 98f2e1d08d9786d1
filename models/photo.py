"""The photo as the pipeline reads it: a strongly tinted one balanced (`models.balance`, experiment
156); a narrow-contrast one stretched (`models.levels`, experiment 154); then a grainy one smoothed
(`models.grain`, experiment 136), else a blurred one sharpened where that is on (`models.focus`,
experiment 138). Each step measures the photo as the steps before it leave it: the stretch the
balanced luma, the grain the stretched one. Smoothing excludes sharpening, which would bring the
grain back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal, NamedTuple

import numpy as np

from models.balance import BalanceParams, balance_colour
from models.focus import FocusParams, sharpen_blurred
from models.grain import GrainParams, smooth_grain
from models.levels import LevelsParams, stretch_levels

Step = Literal["balance", "levels", "grain", "focus"]


class PhotoParams(NamedTuple):
    """Every step's settings, passed as one (a tuple, so that it unpacks as grain, focus, levels,
    balance); the defaults are the modules' own: balancing, stretching and smoothing on, sharpening
    off."""

    grain: GrainParams = GrainParams()
    focus: FocusParams = FocusParams()
    levels: LevelsParams = LevelsParams()
    balance: BalanceParams = BalanceParams()

    @property
    def on(self) -> bool:
        """Whether any step may change a photo."""
        return self.grain.on or self.focus.on or self.levels.on or self.balance.on

    def settings(self) -> dict[str, dict[str, float]]:
        """Each step's settings by its name ("grain", "focus", "levels", "balance"), as the served
        version, `/v1/model` and `evaluation.json` record them."""
        return {name: asdict(params) for name, params in self._asdict().items()}


def photo_params(
    grain_threshold: float | None = None,
    sharpen_gate: float | None = None,
    levels_gate: float | None = None,
    balance_gate: float | None = None,
) -> PhotoParams:
    """The steps' settings from a service setting or an evaluator flag each: None keeps
    `models.grain`'s, `models.focus`', `models.levels`' and `models.balance`'s defaults, 0 turns a
    step off."""
    grain = GrainParams() if grain_threshold is None else GrainParams(threshold=grain_threshold)
    focus = FocusParams() if sharpen_gate is None else FocusParams(gate=sharpen_gate)
    levels = LevelsParams() if levels_gate is None else LevelsParams(gate=levels_gate)
    balance = BalanceParams() if balance_gate is None else BalanceParams(gate=balance_gate)
    return PhotoParams(grain, focus, levels, balance)


def prepare_photo(pixels: np.ndarray, params: PhotoParams) -> tuple[np.ndarray, tuple[Step, ...]]:
    """uint8 RGB `pixels` [H, W, 3] -> (the pixels to read, a new array where a step changed them;
    the steps that did, in order: "balance", "levels", then "grain" or "focus"; () for none)."""
    grain, focus, levels, balance = params
    balanced = balance_colour(pixels, balance)
    steps: tuple[Step, ...] = () if balanced is pixels else ("balance",)
    stretched = stretch_levels(balanced, levels)
    steps = steps if stretched is balanced else (*steps, "levels")
    smoothed = smooth_grain(stretched, grain)
    if smoothed is not stretched:
        return smoothed, (*steps, "grain")
    sharpened = sharpen_blurred(stretched, focus)
    return sharpened, steps if sharpened is stretched else (*steps, "focus")
