"""Does a photo show a given number? What a caller that knows which number to expect asks.

A delivery's proof photo should show its address's house number; a register says which numbers a
street has. Such a caller does not need the number read, only whether the expected one is there, and
the readings one edit away (`models.alternatives`) answer that more often than the number read does.
On the validation split (experiment 152) the labelled number passes for 0.864 of the photos as the
number read and for 0.889 as the one read or an alternative whose edit scores at least `MIN_SCORE`
(0.2), while a neighbour's number (the label +-1 or +-2) passes for 0.25 % and 1.0 % of the photos,
and one with a digit of the label dropped (12 for 123) for 0.8 % and 2.3 % (`training.metrics.
confirmation_rates`; docs/evaluation.md draws the whole trade). A caller whose wrong answers cost
more than its unconfirmed ones asks with a higher `min_score`, or with None: the number read only.

Pure: plain detections in, a plain answer out; the service and `training.metrics` apply it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from models.alternatives import Alternative, Edit, alternative_readings
from models.assembly import AssembledNumber, Detection

MIN_SCORE = 0.2  # experiment 152: a neighbour's number passes for at most 1 % of the photos
How = Literal["read", "alternative"]


@dataclass(frozen=True)
class Confirmation:
    """Whether the `expected` number (an integer >= 0) is shown: `how` it was found ("read": the
    number read; "alternative": a reading one edit away; None: not shown), and the reading that
    shows it (`number`: digits left to right, xyxy boxes in the image's pixels; None when not
    shown), with the `edit` and its `score` for an alternative (None for the number read)."""

    expected: int
    how: How | None
    number: AssembledNumber | None
    edit: Edit | None = None
    score: float | None = None

    @property
    def shown(self) -> bool:
        return self.how is not None


def confirm_number(
    expected: int,
    number: AssembledNumber,
    sites: Sequence[Detection],
    detections: Sequence[Detection],
    min_score: float | None = MIN_SCORE,
) -> Confirmation:
    """Whether `expected` is the number read (`number`, assembled from `sites`; `detections` the
    detector's, one per class and box; xyxy pixels) or a reading one edit from it whose edit scores
    at least `min_score` (the surest such; None: the number read only). Numbers compare by value:
    "038" shows 38. ValueError for a negative `expected`."""
    if expected < 0:
        raise ValueError(f"expected must be a number >= 0, got {expected}")
    if number.digits and number.value == expected:
        return Confirmation(expected, "read", number)
    if min_score is not None:
        match = _first(alternative_readings(number, sites, detections), expected, min_score)
        if match is not None:
            return Confirmation(expected, "alternative", match.number, match.edit, match.score)
    return Confirmation(expected, None, None)


def confirming_scores(
    number: AssembledNumber, sites: Sequence[Detection], detections: Sequence[Detection]
) -> dict[int, float]:
    """Every number `confirm_number` would confirm from this reading (its arguments), mapped to the
    highest `min_score` at which it does: math.inf for the number read (confirmed at any), the edit's
    score for an alternative. What `training.metrics` sweeps `min_score` over, one reading at a time."""
    scores = {a.number.value: a.score for a in alternative_readings(number, sites, detections)}
    if number.digits:
        scores[number.value] = math.inf
    return scores


def _first(alternatives: Sequence[Alternative], expected: int, min_score: float) -> Alternative | None:
    """The surest of `alternatives` that reads `expected` with a score >= `min_score`, else None."""
    return next((a for a in alternatives if a.number.value == expected and a.score >= min_score), None)
