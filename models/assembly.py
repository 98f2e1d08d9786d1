"""The number-assembly rule, shared by the evaluator and the service.

Keep detections scoring at least `score_threshold`, drop duplicates (class-agnostic, higher score wins)
by IoU and by centre distance, sort the survivors left to right and concatenate their digits. An
optional height rule (`AssemblyParams.height_ratio`, off by default) then drops "digits" much taller
or shorter than the number's others.

Digits stacked one above the other (a number down a narrow post or door frame: 8 of the 4,845
training photos, none of the 807 validation ones) have no left to right; such a number, a column
(`is_column`), is read top to bottom (`AssemblyParams.read_columns`, on by default; experiment 158).
A staircase of digits, each beside the last and higher or lower, is a row, read left to right.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.boxes import BoxXYXY, box_center, box_height, box_iou, span_overlap

NO_NUMBER = -1
COLUMN_OVERLAP_X = 0.5  # neighbours in a column overlap along x by at least this x the narrower's width
COLUMN_OVERLAP_Y = 0.5  # ... and along y by at most this x the shorter's height


@dataclass(frozen=True)
class Detection:
    """One detected digit. `box_xyxy` is [x1, y1, x2, y2] in original-image pixels. `fit`, when a box
    refiner with a fit head has looked at the box (`models.refiner`), is its estimate of the box's IoU
    with the digit's true box, in [0, 1]. `quality`, when a rescorer has judged the detection among
    its image's others (`models.rescorer`), is its estimate of the share of COCO's IoU thresholds at
    which the detection is a true positive, in [0, 1]. Task 1 ranks boxes by `ranking_score`."""

    box_xyxy: BoxXYXY
    digit: int
    score: float
    fit: float | None = None
    quality: float | None = None

    @property
    def ranking_score(self) -> float:
        """How confidently this is the digit *and* its box: `score` x `fit` (`score` without a fit),
        and with a `quality` the geometric mean of that and the quality (model card, experiment 25)."""
        base = self.score if self.fit is None else self.score * self.fit
        return base if self.quality is None else math.sqrt(base * self.quality)


@dataclass(frozen=True)
class AssemblyParams:
    """Thresholds of the rule. An `iou_threshold` or `center_distance_ratio` of 0 turns that de-dup off.

    Two detections are duplicates when their IoU exceeds `iou_threshold`, or when their centres lie
    closer than `center_distance_ratio` times the wider box's width. `height_ratio` (0 = off, else
    >= 1): after de-duplication, drop every digit whose box is more than `height_ratio` times taller
    or shorter than the number's reference height (`drop_height_outliers`). `read_columns`: digits
    that form a column (`is_column`) are read top to bottom; off, every number is read left to right.
    """

    score_threshold: float = 0.6
    iou_threshold: float = 0.3
    center_distance_ratio: float = 0.4
    height_ratio: float = 0.0
    read_columns: bool = True

    def __post_init__(self) -> None:
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.center_distance_ratio < 0:
            raise ValueError(f"center_distance_ratio must be >= 0, got {self.center_distance_ratio}")
        check_height_ratio(self.height_ratio)


def check_height_ratio(value: float) -> float:
    """`value` when it is a valid `AssemblyParams.height_ratio` (0 = off, or >= 1); else ValueError."""
    if value != 0 and not value >= 1:
        raise ValueError(f"height_ratio must be 0 (off) or >= 1, got {value}")
    return value


@dataclass(frozen=True)
class AssembledNumber:
    """The number read from one image. `value` is -1 and `text` empty when no digit survives.

    `confidence` is the product of the used digits' scores (0.0 when there are none). `digits` are
    in reading order; `read_columns` is the rule they were ordered by (`read_in_order`), so that a
    number made from them again (`models.alternatives`) is read alike.
    """

    text: str
    value: int
    digits: tuple[Detection, ...]
    confidence: float
    read_columns: bool = True


def assemble_number(detections: Iterable[Detection], params: AssemblyParams | None = None) -> AssembledNumber:
    """Read the number from one image's detections (any order)."""
    params = params or AssemblyParams()
    confident = [d for d in detections if d.score >= params.score_threshold]
    kept = drop_height_outliers(deduplicate(confident, params), params.height_ratio)
    return read_in_order(kept, params.read_columns)


def read_in_order(digits: Iterable[Detection], read_columns: bool = True) -> AssembledNumber:
    """The number `digits` (any order, all kept) make, in `reading_order`: sorted by their boxes'
    centres left to right, or top to bottom where they form a column and `read_columns`."""
    digits = list(digits)
    ordered = tuple(digits[i] for i in reading_order([d.box_xyxy for d in digits], read_columns))
    if not ordered:
        return AssembledNumber(text="", value=NO_NUMBER, digits=(), confidence=0.0, read_columns=read_columns)
    text = "".join(str(d.digit) for d in ordered)
    return AssembledNumber(
        text=text,
        value=int(text),
        digits=ordered,
        confidence=math.prod(d.score for d in ordered),
        read_columns=read_columns,
    )


def reading_order(boxes: Sequence[BoxXYXY], read_columns: bool = True) -> list[int]:
    """The indices of one number's digit `boxes` (xyxy, any order) in reading order: by their centres
    left to right, or, where `read_columns` and the boxes form a column (`is_column`), top to bottom.
    Ties keep the given order."""
    axis = 1 if read_columns and is_column(boxes) else 0
    centres = [box_center(b)[axis] for b in boxes]
    return sorted(range(len(boxes)), key=centres.__getitem__)


def is_column(boxes: Sequence[BoxXYXY]) -> bool:
    """Whether two or more digit `boxes` (xyxy, any order) stand one above the other: taken top to
    bottom by their centres, each overlaps the next along x by at least `COLUMN_OVERLAP_X` x the
    narrower one's width and along y by at most `COLUMN_OVERLAP_Y` x the shorter one's height.
    Neighbours in a row overlap along y and hardly along x, so no row is a column; nor is a
    staircase whose digits stand each beside the last, higher or lower."""
    if len(boxes) < 2:
        return False
    ordered = sorted(boxes, key=lambda b: box_center(b)[1])
    for upper, lower in itertools.pairwise(ordered):
        narrower = min(upper[2] - upper[0], lower[2] - lower[0])
        shorter = min(box_height(upper), box_height(lower))
        if (
            span_overlap(upper, lower, 0) < COLUMN_OVERLAP_X * narrower
            or span_overlap(upper, lower, 1) > COLUMN_OVERLAP_Y * shorter
        ):
            return False
    return True


def deduplicate(detections: Sequence[Detection], params: AssemblyParams) -> list[Detection]:
    """Greedy class-agnostic de-duplication: visit by descending score, keep a detection unless it
    duplicates one already kept. Returns the kept detections in descending score order."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: d.score, reverse=True):
        if not any(_is_duplicate(det, other, params) for other in kept):
            kept.append(det)
    return kept


def drop_height_outliers(digits: Sequence[Detection], ratio: float) -> list[Detection]:
    """`digits` (one number's, de-duplicated, any order; kept in that order) without those whose box
    height (y2 - y1) is over `ratio` x or under 1 / `ratio` x the reference height: the median of
    their heights, or with exactly two digits the more confident one's (on a tie the first's). The
    digits of a house number share a height; a much smaller or larger "digit" beside them is
    clutter or another sign. `ratio` 0, fewer than two digits or a zero reference: all kept."""
    if ratio <= 0 or len(digits) < 2:
        return list(digits)
    heights = [box_height(d.box_xyxy) for d in digits]
    if len(digits) == 2:
        reference = heights[0] if digits[0].score >= digits[1].score else heights[1]
    else:
        reference = statistics.median(heights)
    if reference <= 0:
        return list(digits)
    return [d for d, h in zip(digits, heights, strict=True) if reference / ratio <= h <= reference * ratio]


def _is_duplicate(a: Detection, b: Detection, params: AssemblyParams) -> bool:
    if params.iou_threshold > 0 and box_iou(a.box_xyxy, b.box_xyxy) > params.iou_threshold:
        return True
    if params.center_distance_ratio > 0:
        (ax, ay), (bx, by) = box_center(a.box_xyxy), box_center(b.box_xyxy)
        width = max(a.box_xyxy[2] - a.box_xyxy[0], b.box_xyxy[2] - b.box_xyxy[0])
        return math.hypot(ax - bx, ay - by) < params.center_distance_ratio * width
    return False
