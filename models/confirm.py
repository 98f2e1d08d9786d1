"""Does a photo show a given number, or which of several? What a caller that knows what to expect asks.

A delivery's proof photo should show its address's house number; a register says which numbers a
street has. Such a caller does not need the number read, only whether the expected one is there (or
which of the street's), and the readings one edit away (`models.alternatives`) answer that more
often than the number read does. On the validation split (experiment 152) the labelled number
passes for 0.864 of the photos as the number read and for 0.889 as the one read or an alternative
whose edit scores at least `MIN_SCORE` (0.2), while a neighbour's number (the label +-1 or +-2)
passes for 0.25 % and 1.0 % of the photos, and one with a digit of the label dropped (12 for 123)
for 0.8 % and 2.3 % (`training.metrics.confirmation_rates`; docs/evaluation.md draws the whole
trade). A caller whose wrong answers cost more than its unconfirmed ones asks with a higher
`min_score`, or with None: the number read only. Asked which of a street's numbers it shows (the
label, +-2 and +-4), the surest that passes is the label for 0.884 of the photos and another for
1.0 % (`training.metrics.street_rates`).

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
    """Which of the `asked` numbers (integers >= 0, each once, in the order asked) an image shows:
    `passing`, every one that passes, surest first (the number read, then the alternatives by their
    edit's score); for the first (`match`), `how` it was found ("read": the number read;
    "alternative": a reading one edit away; None: none passes), the reading that shows it (`number`:
    digits left to right, xyxy boxes in the image's pixels), and the `edit` and its `score` for an
    alternative (None for the number read)."""

    asked: tuple[int, ...]
    passing: tuple[int, ...] = ()
    how: How | None = None
    number: AssembledNumber | None = None
    edit: Edit | None = None
    score: float | None = None

    @property
    def shown(self) -> bool:
        return bool(self.passing)

    @property
    def match(self) -> int | None:
        """The asked number the image shows (the surest, where several pass); None when none does."""
        return self.passing[0] if self.passing else None


def confirm_number(
    asked: int | Sequence[int],
    number: AssembledNumber,
    sites: Sequence[Detection],
    detections: Sequence[Detection],
    min_score: float | None = MIN_SCORE,
) -> Confirmation:
    """Which of the `asked` numbers (one, or several: a street's) the image shows: each passes when it
    is the number read (`number`, assembled from `sites`; `detections` the detector's, one per class
    and box; xyxy pixels) or a reading one edit from it whose edit scores at least `min_score` (None:
    the number read only). Numbers compare by value: "038" shows 38. ValueError for a negative number
    or none asked."""
    wanted = tuple(dict.fromkeys([asked] if isinstance(asked, int) else asked))
    if not wanted or min(wanted) < 0:
        raise ValueError(f"ask about one or more numbers >= 0, not {wanted}")
    read = bool(number.digits) and number.value in wanted
    found: list[Alternative] = []
    if min_score is not None:
        found = [
            a
            for a in alternative_readings(number, sites, detections)
            if a.number.value in wanted and a.score >= min_score
        ]
    passing = ((number.value,) if read else ()) + tuple(a.number.value for a in found)
    if read:
        return Confirmation(wanted, passing, "read", number)
    if found:
        best = found[0]  # surest first
        return Confirmation(wanted, passing, "alternative", best.number, best.edit, best.score)
    return Confirmation(wanted)


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
