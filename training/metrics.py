"""Evaluation metrics on plain data: COCO mAP (Task 1), whole-number accuracy (Task 2), confusion matrix,
what became of each ground-truth digit, how often the number is among the alternatives offered, and
how often /v1/confirm passes the labelled number and others."""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.alternatives import alternative_readings
from models.assembly import AssemblyParams, assemble_number, deduplicate
from models.boxes import box_iou, xyxy_to_xywh
from models.confirm import confirm_number, confirming_scores
from models.hw2 import Detections
from models.labels import NUM_DIGITS, coco_categories, digit_to_category_id
from training.data import ImageRecord


def ground_truth_coco(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Records -> a COCO ground-truth document in the HW2 convention (category_id = digit + 1)."""
    images = [
        {"id": r.image_id, "file_name": r.path.name, "width": r.width, "height": r.height} for r in records
    ]
    annotations: list[dict[str, Any]] = []
    for r in records:
        for b in r.boxes:
            x, y, w, h = xyxy_to_xywh(b.box_xyxy)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": r.image_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "category_id": digit_to_category_id(b.digit),
                }
            )
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def coco_evaluation(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> Any:
    """pycocotools' `COCOeval` (bbox) of `predictions` (pred.json rows, xywh) against `gt` (a COCO
    ground-truth document, `ground_truth_coco`), with its per-image matching done (`evaluate`), quietly;
    `accumulate` is left to the caller."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {**gt, "info": {}}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(p) for p in predictions]) if predictions else COCO()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
    return evaluator


def coco_map(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> dict[str, float]:
    """COCO bbox mAP@[.5:.95], mAP@.5 and mAP@.75 via pycocotools; all 0.0 for an empty prediction set."""
    if not predictions or not gt["annotations"]:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    evaluator = coco_evaluation(gt, predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(0.0, float(s)) for s in evaluator.stats[:3]]  # -1 means "no data" in pycocotools
    return {"map": stats[0], "map50": stats[1], "map75": stats[2]}


def predicted_numbers(
    detections: Detections, image_ids: Sequence[int], params: AssemblyParams
) -> dict[int, int]:
    """image_id -> assembled number (-1 when nothing survives), for every id in `image_ids`."""
    return {i: assemble_number(detections.get(i, ()), params).value for i in image_ids}


def number_accuracy(records: Sequence[ImageRecord], numbers: Mapping[int, int]) -> float:
    """Share of images whose whole number is read exactly (Task 2)."""
    if not records:
        return 0.0
    return sum(numbers.get(r.image_id, -1) == r.number for r in records) / len(records)


def confusion_matrix(
    records: Sequence[ImageRecord], detections: Detections, params: AssemblyParams, iou_match: float = 0.5
) -> np.ndarray:
    """Int64[11, 11]: rows are ground-truth digits 0-9 then "none" (a false detection), columns are
    predicted digits 0-9 then "missed". Predictions are the assembly's survivors, matched greedily by
    descending score to the unmatched ground-truth box of highest IoU >= `iou_match`."""
    none = NUM_DIGITS
    matrix = np.zeros((NUM_DIGITS + 1, NUM_DIGITS + 1), dtype=np.int64)
    for record in records:
        kept = [d for d in detections.get(record.image_id, ()) if d.score >= params.score_threshold]
        unmatched = list(record.boxes)
        for det in deduplicate(kept, params):
            ious = [box_iou(det.box_xyxy, g.box_xyxy) for g in unmatched]
            best = int(np.argmax(ious)) if ious else -1
            if best >= 0 and ious[best] >= iou_match:
                matrix[unmatched.pop(best).digit, det.digit] += 1
            else:
                matrix[none, det.digit] += 1
        for g in unmatched:
            matrix[g.digit, none] += 1
    return matrix


DIGIT_OUTCOMES = ("found", "wrong_digit", "below_threshold", "not_localised")


def digit_outcomes(
    records: Sequence[ImageRecord], detections: Detections, score_threshold: float, iou_match: float = 0.5
) -> dict[str, int]:
    """Count what became of every ground-truth digit, before de-duplication, looking at the raw
    detections whose box overlaps it at IoU >= `iou_match`:

    - found: one of them is the right digit and scores >= `score_threshold`;
    - wrong_digit: none is the right digit above the threshold, but another digit is;
    - below_threshold: some overlap it, all scoring under the threshold (the right digit or not);
    - not_localised: no detection overlaps it that well, at any score.

    Tells apart the fixes: a threshold, a better classifier, or better boxes and recall.
    """
    counts = dict.fromkeys(DIGIT_OUTCOMES, 0)
    for record in records:
        dets = detections.get(record.image_id, ())
        for truth in record.boxes:
            near = [d for d in dets if box_iou(d.box_xyxy, truth.box_xyxy) >= iou_match]
            confident = [d for d in near if d.score >= score_threshold]
            if any(d.digit == truth.digit for d in confident):
                counts["found"] += 1
            elif confident:
                counts["wrong_digit"] += 1
            elif near:
                counts["below_threshold"] += 1
            else:
                counts["not_localised"] += 1
    return counts


CONFIDENCE_EDGES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
COVERAGES = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


def number_confidences(
    records: Sequence[ImageRecord], detections: Detections, params: AssemblyParams
) -> tuple[np.ndarray, np.ndarray]:
    """Float64[N] confidence of each image's assembled number (the product of its digits' scores, 0
    when no digit survives; what /v1/recognize returns) and bool[N] whether it is the labelled number,
    in `records` order."""
    confidences, right = [], []
    for record in records:
        number = assemble_number(detections.get(record.image_id, ()), params)
        confidences.append(number.confidence)
        right.append(number.value == record.number)
    return np.asarray(confidences, dtype=np.float64), np.asarray(right, dtype=bool)


def alternatives_coverage(
    records: Sequence[ImageRecord],
    sites: Detections,
    detections: Detections,
    params: AssemblyParams,
    most: int = 5,
) -> list[dict[str, float]]:
    """For k = 0 .. `most`: how many images, and what share, have their labelled number among the
    number read (from `sites`) and its first k alternatives (`models.alternatives`, one edit away;
    swaps from `detections`), as /v1/recognize?alternatives=k offers them. k = 0 is the accuracy."""
    hits = np.zeros(most + 1, dtype=np.int64)
    for record in records:
        found = sites.get(record.image_id, ())
        number = assemble_number(found, params)
        if number.value == record.number:
            hits += 1
            continue
        offered = alternative_readings(number, found, detections.get(record.image_id, ()), most=most)
        values = [alt.number.value for alt in offered]
        if record.number in values:
            hits[values.index(record.number) + 1 :] += 1
    n = max(len(records), 1)
    return [{"k": k, "right": int(h), "share": float(h) / n} for k, h in enumerate(hits)]


CONFIRM_GRID: tuple[float | None, ...] = (None, 0.5, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0)
CONFIRM_KINDS = ("label", "neighbour", "other photo", "digit dropped", "digit swapped", "digit added")


def confirm_candidates(label: int, other: int) -> dict[str, list[int]]:
    """The numbers /v1/confirm is asked about for a photo labelled `label`, by kind: the label;
    its neighbours (+-1, +-2, from 0); `other`, another photo's label; and the numbers one edit from
    the label's digits: one dropped (12 and 13 for 123), one swapped for another digit, one added
    (by value, no number twice and the label and the earlier kinds' numbers left out)."""
    text = str(label)
    edits = {
        "digit dropped": [text[:i] + text[i + 1 :] for i in range(len(text)) if len(text) > 1],
        "digit swapped": [text[:i] + c + text[i + 1 :] for i in range(len(text)) for c in "0123456789"],
        "digit added": [text[:i] + c + text[i:] for i in range(len(text) + 1) for c in "0123456789"],
    }
    kinds = {
        "label": [label],
        "neighbour": [n for n in (label - 2, label - 1, label + 1, label + 2) if n >= 0],
        "other photo": [other],
    }
    seen: set[int] = set()
    for kind, numbers in (*kinds.items(), *((k, [int(t) for t in v]) for k, v in edits.items())):
        kinds[kind] = [n for n in dict.fromkeys(numbers) if n not in seen and (kind == "label" or n != label)]
        seen.update(kinds[kind])
    return kinds


def confirmation_rates(
    records: Sequence[ImageRecord],
    sites: Detections,
    detections: Detections,
    params: AssemblyParams,
    grid: Sequence[float | None] = CONFIRM_GRID,
) -> dict[str, Any]:
    """For each `min_score` of `grid` (None: the number read only), the share of the numbers of each
    kind (`confirm_candidates`; "other photo" is the next photo's label that differs, cyclically)
    that `models.confirm.confirm_number` passes for the photo: the label's share is the true accept
    rate, the others' false accept rates; photos labelled with no digit are left out. Returns
    {"pairs": {kind: n}, "rows": [{"min_score", kind: share, ...}], "street": `street_rates`}."""
    labels = [r.number for r in records]
    accepted = {kind: np.zeros(len(grid), dtype=np.int64) for kind in CONFIRM_KINDS}
    pairs = dict.fromkeys(CONFIRM_KINDS, 0)
    limits = np.array([np.inf if t is None else t for t in grid])
    for i, record in enumerate(records):
        if record.number < 0:  # nothing to confirm
            continue
        found = sites.get(record.image_id, ())
        number = assemble_number(found, params)
        scores = confirming_scores(number, found, detections.get(record.image_id, ()))
        rest = labels[i + 1 :] + labels[:i]
        other = next((n for n in rest if n != record.number and n >= 0), record.number)
        for kind, numbers in confirm_candidates(record.number, other).items():
            pairs[kind] += len(numbers)
            for n in numbers:
                accepted[kind] += scores.get(n, -np.inf) >= limits
    rows = [
        {"min_score": t, **{k: float(accepted[k][j]) / max(pairs[k], 1) for k in CONFIRM_KINDS}}
        for j, t in enumerate(grid)
    ]
    return {"pairs": pairs, "rows": rows, "street": street_rates(records, sites, detections, params, grid)}


STREET_OFFSETS = (-4, -2, 0, 2, 4)  # a photo's side of its street: the label and two houses each way


def street_rates(
    records: Sequence[ImageRecord],
    sites: Detections,
    detections: Detections,
    params: AssemblyParams,
    grid: Sequence[float | None] = CONFIRM_GRID,
) -> list[dict[str, Any]]:
    """For each `min_score` of `grid`, asked which of its street's numbers a photo shows (the label
    and the label +-2, +-4, from 0), as /v1/confirm with those numbers answers (its `match`): how many
    photos answer with the label (`right`), with another (`wrong`) or with none (`none`); photos
    labelled with no digit are left out."""
    counts = {kind: [0] * len(grid) for kind in ("right", "wrong", "none")}
    for record in records:
        if record.number < 0:
            continue
        found = sites.get(record.image_id, ())
        number = assemble_number(found, params)
        street = [record.number + o for o in STREET_OFFSETS if record.number + o >= 0]
        for j, t in enumerate(grid):
            match = confirm_number(street, number, found, detections.get(record.image_id, ()), t).match
            counts["none" if match is None else "right" if match == record.number else "wrong"][j] += 1
    return [{"min_score": t, **{kind: n[j] for kind, n in counts.items()}} for j, t in enumerate(grid)]


def auc(scores: np.ndarray, right: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a right reading outscores a wrong one (ties count
    half); 0.5 when either kind is missing."""
    positives, negatives = int(right.sum()), int((~right).sum())
    if not positives or not negatives:
        return 0.5
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # the rank (from 1) of each distinct score's last image
    ranks = (ends - (counts - 1) / 2)[group]  # ties share the mean of the ranks they span
    return float((ranks[right].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def confidence_report(
    confidences: np.ndarray,
    right: np.ndarray,
    edges: Sequence[float] = CONFIDENCE_EDGES,
    coverages: Sequence[float] = COVERAGES,
) -> dict[str, Any]:
    """How far the number's confidence can be trusted, from `confidences` (float[N] in [0, 1]) and
    `right` (bool[N], the number read right).

    - bins: for each [edges[i], edges[i+1]) (the last one closed), the images in it, how many were
      read right, their accuracy and mean confidence (NaN-free: empty bins report 0 for both);
    - auc: the chance that a number read right has a higher confidence than one misread (`auc`);
    - coverage: answering only the most confident share c of the images (ties broken by image
      order), the accuracy of those answers and the lowest confidence answered; none when N is 0.
    """
    if confidences.shape != right.shape or confidences.ndim != 1:
        raise ValueError(f"confidences {confidences.shape} and right {right.shape} must be equal 1-D")
    bins = []
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        inside = (confidences >= low) & ((confidences <= high) if last else (confidences < high))
        count = int(inside.sum())
        bins.append(
            {
                "low": float(low),
                "high": float(high),
                "images": count,
                "right": int(right[inside].sum()),
                "accuracy": float(right[inside].mean()) if count else 0.0,
                "mean_confidence": float(confidences[inside].mean()) if count else 0.0,
            }
        )
    order = np.argsort(-confidences, kind="stable")
    coverage = []
    for share in coverages if len(order) else ():
        answered = order[: max(1, round(share * len(order)))]
        coverage.append(
            {
                "coverage": float(share),
                "images": len(answered),
                "accuracy": float(right[answered].mean()),
                "min_confidence": float(confidences[answered].min()),
            }
        )
    return {"auc": auc(confidences, right), "bins": bins, "coverage": coverage}
