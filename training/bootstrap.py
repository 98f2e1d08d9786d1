"""How far a split's mAP and accuracy could move on other photos like these: bootstrap intervals.

A validation split of a few hundred photos measures mAP and whole-number accuracy with sampling error.
Resampling the photos with replacement (Efron's bootstrap) and scoring each resample shows how wide that
error is; resampling two models' predictions with the same draws shows whether the gap between them is.
COCO matching is per image, so it runs once (pycocotools' `evaluate`); each resample only re-weights the
images and redoes pycocotools' `accumulate`, which makes a thousand resamples take seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.metrics import coco_evaluation

CONFIDENCE = 0.95
METRICS = ("map", "map50", "map75")
SAMPLES = 1000  # resamples by default: ~1 s for a split of 807 images


@dataclass(frozen=True)
class CategoryMatches:
    """One category's detections over the split, in pycocotools' ranking (score descending, stable).

    image_index: int[D], the position in `MatchTable.image_ids` of each detection's image.
    true_positive / false_positive: bool[T, D], matched / unmatched at each IoU threshold, both False
    for a detection pycocotools ignores. gt_count: int[I], each image's ground-truth boxes that count."""

    image_index: np.ndarray
    true_positive: np.ndarray
    false_positive: np.ndarray
    gt_count: np.ndarray


@dataclass(frozen=True)
class MatchTable:
    """Every detection matched to the ground truth once, at every COCO IoU threshold (0.50:0.05:0.95),
    area "all", at most 100 detections per image and category: what `weighted_map` re-weights."""

    image_ids: tuple[int, ...]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    categories: tuple[CategoryMatches, ...]


@dataclass(frozen=True)
class Interval:
    """A statistic on the split (`estimate`), the standard deviation of its resamples (`standard_error`)
    and their central `CONFIDENCE` share (`low`, `high`: percentile interval)."""

    estimate: float
    standard_error: float
    low: float
    high: float


def add_bootstrap_argument(parser: argparse.ArgumentParser, intervals_of: str) -> None:
    """`--bootstrap N` (default `SAMPLES`, 0 = off): how many resamples give the intervals of
    `intervals_of` (the help text's words)."""
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=SAMPLES,
        help=f"resamples of the images for the intervals of {intervals_of} (0 = off; training/bootstrap.py)",
    )


def match_table(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> MatchTable:
    """COCO ground truth (`training.metrics.ground_truth_coco`) and detections (pred.json rows, xywh) ->
    their matches, via pycocotools' own `evaluate`; images in ascending id order."""
    evaluator = coco_evaluation(gt, predictions)
    params = evaluator.params
    image_ids, n_images, max_det = tuple(params.imgIds), len(params.imgIds), params.maxDets[-1]
    n_areas, n_thresholds = len(params.areaRng), len(params.iouThrs)
    categories = []
    for k in range(len(params.catIds)):
        entries = evaluator.evalImgs[k * n_areas * n_images : (k * n_areas + 1) * n_images]  # area "all"
        categories.append(_category_matches(entries, n_images, n_thresholds, max_det))
    return MatchTable(image_ids, np.asarray(params.iouThrs), np.asarray(params.recThrs), tuple(categories))


def _category_matches(
    entries: Sequence[dict[str, Any] | None], n_images: int, n_thresholds: int, max_det: int
) -> CategoryMatches:
    """One category's per-image `evalImgs` entries -> its detections ranked as `accumulate` ranks them."""
    scores, images, matched, ignored = [], [], [], []
    gt_count = np.zeros(n_images, dtype=np.int64)
    for i, entry in enumerate(entries):
        if entry is None:
            continue
        gt_count[i] = int(np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0))
        entry_scores = np.asarray(entry["dtScores"][:max_det], dtype=float)
        scores.append(entry_scores)
        images.append(np.full(len(entry_scores), i, dtype=np.int64))
        matched.append(np.asarray(entry["dtMatches"])[:, :max_det].reshape(n_thresholds, -1) != 0)
        ignored.append(np.asarray(entry["dtIgnore"])[:, :max_det].reshape(n_thresholds, -1).astype(bool))
    if not scores:
        empty = np.zeros((n_thresholds, 0), dtype=bool)
        return CategoryMatches(np.zeros(0, dtype=np.int64), empty, empty, gt_count)
    order = np.argsort(-np.concatenate(scores), kind="mergesort")
    hit, skip = np.concatenate(matched, axis=1)[:, order], np.concatenate(ignored, axis=1)[:, order]
    return CategoryMatches(np.concatenate(images)[order], hit & ~skip, ~hit & ~skip, gt_count)


def weighted_map(table: MatchTable, weights: np.ndarray) -> dict[str, float]:
    """mAP@[.5:.95], mAP@.5 and mAP@.75 with image i counted `weights[i]` times (float[I], >= 0; all
    ones gives pycocotools' figures). A category without counted ground truth is left out, as
    pycocotools leaves it out; 0.0 when none is left."""
    per_category = [
        p for c in table.categories if (p := _precision(c, weights, table.recall_thresholds)) is not None
    ]
    if not per_category:
        return dict.fromkeys(METRICS, 0.0)
    precision = np.stack(per_category)  # [K, T, R]
    t50 = int(np.argmin(np.abs(table.iou_thresholds - 0.5)))
    t75 = int(np.argmin(np.abs(table.iou_thresholds - 0.75)))
    return {
        "map": float(precision.mean()),
        "map50": float(precision[:, t50].mean()),
        "map75": float(precision[:, t75].mean()),
    }


def _precision(
    matches: CategoryMatches, weights: np.ndarray, recall_thresholds: np.ndarray
) -> np.ndarray | None:
    """Interpolated precision float[T, R] of one category, as pycocotools' `accumulate`, with weighted
    images; None without counted ground truth. A detection of weight 0 adds nothing to the sums, so it
    repeats its predecessor's recall and precision and never changes an interpolated value."""
    n_gt = float(matches.gt_count @ weights)
    if n_gt == 0:
        return None
    n_thresholds, n_det = matches.true_positive.shape
    if n_det == 0:
        return np.zeros((n_thresholds, len(recall_thresholds)))
    w = weights[matches.image_index]
    tp = np.cumsum(matches.true_positive * w, axis=1)
    fp = np.cumsum(matches.false_positive * w, axis=1)
    recall = tp / n_gt
    precision = tp / (tp + fp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((n_thresholds, len(recall_thresholds)))
    for t in range(n_thresholds):
        index = np.searchsorted(recall[t], recall_thresholds, side="left")
        reached = index < n_det
        out[t, reached] = envelope[t, index[reached]]
    return out


def read_right(table: MatchTable, truth: Mapping[int, int], numbers: Mapping[int, int]) -> np.ndarray:
    """bool[I]: whether each image of `table.image_ids` (same order) is read as its `truth` (image_id ->
    number) in `numbers` (a missing image reads -1)."""
    return np.array([numbers.get(i, -1) == truth[i] for i in table.image_ids], dtype=bool)


def resample_weights(n_images: int, samples: int, seed: int) -> np.ndarray:
    """float[samples, n_images]: how often each image is drawn in each resample of n_images draws with
    replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=samples).astype(float)


def interval(estimate: float, resampled: np.ndarray) -> Interval:
    """The split's `estimate` with the spread of its `resampled` values (float[B])."""
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return Interval(float(estimate), float(np.std(resampled, ddof=1)), float(low), float(high))


def bootstrap_metrics(table: MatchTable, right: np.ndarray, samples: int, seed: int = 0) -> dict[str, Any]:
    """Intervals for mAP, mAP50, mAP75 and whole-number accuracy; `right` is bool[I], whether each image
    of `table.image_ids` (same order) is read right. Plain data, `Interval`s as dicts."""
    weights = resample_weights(len(table.image_ids), samples, seed)
    resampled = _resample(table, right, weights)
    full = _scores(table, right, np.ones(len(table.image_ids)))
    out: dict[str, Any] = {"samples": samples, "seed": seed, "confidence": CONFIDENCE}
    for name, values in resampled.items():
        out[name] = asdict(interval(full[name], values))
    return out


def paired_bootstrap(
    table_a: MatchTable,
    table_b: MatchTable,
    right_a: np.ndarray,
    right_b: np.ndarray,
    samples: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Intervals for B - A of every metric in `bootstrap_metrics`, both scored on the same resamples
    of the same images (the tables must list the same image ids)."""
    if table_a.image_ids != table_b.image_ids:
        raise ValueError("the two match tables cover different images: evaluate both on the same split")
    weights = resample_weights(len(table_a.image_ids), samples, seed)
    ones = np.ones(len(table_a.image_ids))
    full_a, full_b = _scores(table_a, right_a, ones), _scores(table_b, right_b, ones)
    resampled_a, resampled_b = _resample(table_a, right_a, weights), _resample(table_b, right_b, weights)
    out: dict[str, Any] = {"samples": samples, "seed": seed, "confidence": CONFIDENCE}
    for name in resampled_a:
        difference = resampled_b[name] - resampled_a[name]
        out[name] = asdict(interval(full_b[name] - full_a[name], difference))
    return out


def _scores(table: MatchTable, right: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    if len(right) != len(table.image_ids):
        raise ValueError(f"{len(right)} right/wrong flags for {len(table.image_ids)} images")
    accuracy = float(weights @ np.asarray(right, dtype=float) / weights.sum())
    return {**weighted_map(table, weights), "accuracy": accuracy}


def _resample(table: MatchTable, right: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric on every resample: name -> float[B]."""
    rows = [_scores(table, right, w) for w in weights]
    return {name: np.array([row[name] for row in rows]) for name in (*METRICS, "accuracy")}
