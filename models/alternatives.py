"""Other readings of a photo, one edit away from the number served: what a caller can fall back on.

A misread number is often one edit from the photo's: a digit the assembly left out (the detector saw
it in the number's row, scored under the threshold), a used digit the detector also read as another
digit on the same box (a rival), or a digit too many (experiment 45: the labelled number is one edit
away for half the misreads). A caller that can check a number against something else - the house
numbers of the street in an address register, the next photo - can use these: the readings such
edits give, each with how sure the edited detection is, surest first. The places are the verifier's
(`models.verifier.left_out_sites`, `rivals`).

Pure: plain detections in, plain readings out; the service and `training.metrics` apply it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from models.assembly import AssembledNumber, Detection, read_in_order
from models.verifier import left_out_sites, rivals

Edit = Literal["insert", "swap", "drop"]
MIN_SCORE = 0.05  # the detector's own floor (box_score_thresh): every detection it returns


@dataclass(frozen=True)
class Alternative:
    """One other reading: `number` (digits in reading order, xyxy boxes in the image's pixels), the
    `edit` that makes it from the served one, and `score` in [0, 1]: how sure the edit is (the
    inserted or swapped-in detection's score; 1 - the dropped digit's). Not a probability that the
    number is right: on the validation split, 1-13 % of alternatives are, rising with the score."""

    number: AssembledNumber
    edit: Edit
    score: float


def alternative_readings(
    number: AssembledNumber,
    sites: Sequence[Detection],
    detections: Sequence[Detection],
    min_score: float = MIN_SCORE,
    most: int | None = None,
) -> list[Alternative]:
    """Every reading one edit from `number` (assembled from `sites`; `detections` the detector's, one
    per class and box; xyxy pixels), the surest edit first, one per number and none the served number
    (by value: "038" and "38" are one):
    insert a site of the number's row scoring >= `min_score` that is no used digit's place; swap a
    used digit for another digit the detector scored >= `min_score` on its box; drop a digit of a
    number of two or more. Nothing for an empty number. At most `most` of them (None: all; 0: none,
    and nothing is worked out: what a request that asks for none costs)."""
    digits = list(number.digits)
    if not digits or most == 0:
        return []
    inserts = [
        Alternative(read_in_order([*digits, s], number.read_columns), "insert", s.score)
        for s in left_out_sites(digits, sites)
        if s.score >= min_score
    ]
    swaps = [
        Alternative(
            _replaced(digits, i, replace(d, digit=x.digit, score=x.score), number.read_columns),
            "swap",
            x.score,
        )
        for i, d in enumerate(digits)
        for x in rivals(d, detections)
        if x.score >= min_score
    ]
    drops = [
        Alternative(_replaced(digits, i, None, number.read_columns), "drop", 1.0 - d.score)
        for i, d in enumerate(digits)
        if len(digits) > 1
    ]
    best: dict[int, Alternative] = {}
    for alt in sorted([*inserts, *swaps, *drops], key=lambda a: a.score, reverse=True):
        if alt.number.value != number.value:  # "038" less its 0 is still 38: no other reading
            best.setdefault(alt.number.value, alt)
    return list(best.values())[:most]


def _replaced(digits: list[Detection], i: int, new: Detection | None, read_columns: bool) -> AssembledNumber:
    """The number with digit `i` replaced by `new` (None: dropped), read by the same rule."""
    return read_in_order([*digits[:i], *([] if new is None else [new]), *digits[i + 1 :]], read_columns)
