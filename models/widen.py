"""A house number seen from the side of the street (experiment 159): its plate turned away, its digits
come out narrower than digits are, by about the cosine of the angle, and the detector, which learned
digits about half as wide as high, finds fewer of them (at 60 degrees it reads 480 of the 807
validation photos instead of 697). How narrow they came out is measured from the digits it does find:
each site's width / height over `TYPICAL_ASPECT` of its digit, the median of those (`squeeze`). Where
that is under `WidenParams.gate`, the photo is read again widened by 1 / squeeze, up to `max_factor`,
and again from the first photo where the widened reading's digits are still that narrow (`rounds`);
the widened reading is kept where the verifier holds it likelier right than the reading before it
(`prefer`), its boxes drawn back into the photo's pixels.

A plate seen from below (a number high on a wall) comes out the other way: its digits shorter for
their width. Where the squeeze is over `WidenParams.squat_gate`, the photo is read again narrowed by
1 / squeeze the same way (the detector sees every photo at a fixed height, so narrowing it is
stretching the digits' height).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

from models.assembly import Detection

#: width / height of each digit 0-9's box, the median over the 10,997 labelled boxes of
#: ../shared/data/svhn-hw2/train.json (a 1 is narrower; the others about half as wide as high)
TYPICAL_ASPECT: Final[tuple[float, ...]] = (
    0.533, 0.381, 0.531, 0.526, 0.527, 0.524, 0.523, 0.506, 0.514, 0.528
)  # fmt: skip


@dataclass(frozen=True)
class WidenParams:
    """When and how far a photo is read again widened or narrowed. A photo whose digit sites scoring at
    least `min_score` have a `squeeze` under `gate` is read again widened by 1 / squeeze, and one whose
    squeeze is over `squat_gate` narrowed by it (at most `max_factor` x either way in all), up to
    `rounds` times while the reading's sites stay past the gate and each round goes further. `gate`
    0 turns widening off, `squat_gate` 0 narrowing."""

    gate: float = 0.85
    squat_gate: float = 1.25
    min_score: float = 0.3
    rounds: int = 2
    max_factor: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gate < 1.0:
            raise ValueError(f"a widen gate must be in [0, 1), not {self.gate}")
        check_squat_gate(self.squat_gate)
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], not {self.min_score}")
        if self.rounds < 1 or self.max_factor <= 1.0:
            raise ValueError(f"rounds must be >= 1 and max_factor > 1, not {self.rounds}, {self.max_factor}")

    @property
    def on(self) -> bool:
        """Whether any photo may be read again widened or narrowed."""
        return self.gate > 0.0 or self.squat_gate > 0.0


def check_squat_gate(value: float) -> float:
    """`value` when it is a valid `WidenParams.squat_gate` (0 = off, or over 1); else ValueError."""
    if not (value == 0 or value > 1):
        raise ValueError(f"squat_gate must be 0 (off) or over 1, got {value}")
    return value


def widen_params(gate: float | None = None, squat_gate: float | None = None) -> WidenParams:
    """The settings from a service setting or an evaluator flag each: None keeps the default, 0 turns
    widening (`gate`) or narrowing (`squat_gate`) off."""
    defaults = WidenParams()
    return WidenParams(
        gate=defaults.gate if gate is None else gate,
        squat_gate=defaults.squat_gate if squat_gate is None else squat_gate,
    )


def squeeze(sites: Sequence[Detection], min_score: float) -> float | None:
    """How narrow the digits came out: the median over `sites` scoring at least `min_score` of their
    box's (xyxy) width / height divided by `TYPICAL_ASPECT` of their digit; 1.0 for digits as wide as
    usual, about cos(angle) for a plate seen at that angle from the side. None without such a site."""
    ratios = [
        (d.box_xyxy[2] - d.box_xyxy[0]) / max(d.box_xyxy[3] - d.box_xyxy[1], 1e-6) / TYPICAL_ASPECT[d.digit]
        for d in sites
        if d.score >= min_score
    ]
    return statistics.median(ratios) if ratios else None


def next_factor(sites: Sequence[Detection], factor: float, params: WidenParams) -> float | None:
    """How wide to read the photo next, from the `sites` (xyxy boxes in the photo's own pixels) of its
    reading widened by `factor` (1.0: as it is; under 1: narrowed): 1 / their `squeeze`, within
    [1 / `params.max_factor`, `params.max_factor`], where the digits of that reading (their squeeze x
    `factor`) are under `params.gate` and that widens it further, or over `params.squat_gate` and that
    narrows it further; None where they are neither, where there is no site to measure, or with both
    gates off."""
    measured = squeeze(sites, params.min_score) if params.on else None
    if measured is None:
        return None
    seen, target = measured * factor, 1.0 / max(measured, 1e-6)
    if params.gate > 0.0 and seen < params.gate:
        wider = min(params.max_factor, target)
        return wider if wider > factor * (1 + 1e-6) else None
    if params.squat_gate > 0.0 and seen > params.squat_gate:
        narrower = max(1.0 / params.max_factor, target)
        return narrower if narrower < factor * (1 - 1e-6) else None
    return None


def widen(pixels: np.ndarray, factor: float) -> np.ndarray:
    """uint8 RGB `pixels` [H, W, 3] -> [H, round(W x `factor`), 3] (at least 1 px), bicubic (PIL's,
    antialiased where it narrows): the photo as it would be seen from in front, where `factor` undoes a
    side view's narrowing (or, under 1, a view from below's squat); the same array for a factor that
    leaves the width as it is. The service and the evaluator widen alike."""
    height, width = pixels.shape[:2]
    wide = max(1, round(width * factor))
    if wide == width:
        return pixels
    return np.array(Image.fromarray(pixels).resize((wide, height), Image.Resampling.BICUBIC))


def prefer(widened: float | None, before: float | None, widened_read: bool, before_read: bool) -> bool:
    """Whether to keep a widened reading, with verifier estimate `widened` (`widened_read`: whether it
    holds a number), over the reading kept before it (`before`, `before_read`): never where it read
    nothing; always where the one before read nothing or where either has no estimate (no verifier
    that holds); else where its estimate is higher."""
    if not widened_read:
        return False
    if not before_read or widened is None or before is None:
        return True
    return widened > before
