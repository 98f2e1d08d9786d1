"""training.bootstrap: re-weighted COCO mAP against pycocotools, intervals, paired differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.labels import coco_categories
from training.bootstrap import (
    bootstrap_metrics,
    interval,
    match_table,
    paired_bootstrap,
    resample_weights,
    weighted_map,
)
from training.metrics import coco_map

N_IMAGES = 24


def make_split(seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground truth of N_IMAGES images with 1-3 digits each, and imperfect detections: jittered
    boxes, some read as another digit, some missed, some on nothing; every score distinct."""
    rng = np.random.default_rng(seed)
    images, annotations, predictions = [], [], []
    scores = iter(rng.permutation(1000) / 1000.0 + 0.0005)
    for image_id in range(1, N_IMAGES + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 200, "height": 80})
        for k in range(int(rng.integers(1, 4))):
            box = [10.0 + 50 * k, 10.0, 30.0, 50.0]
            category = int(rng.integers(1, 11))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                    "category_id": category,
                }
            )
            if rng.random() < 0.15:
                continue  # missed
            jitter = rng.normal(0.0, 3.0, size=4)
            found = [box[0] + jitter[0], box[1] + jitter[1], box[2] + jitter[2], box[3] + jitter[3]]
            read = category if rng.random() < 0.85 else int(rng.integers(1, 11))
            predictions.append(
                {"image_id": image_id, "bbox": found, "category_id": read, "score": next(scores)}
            )
        if rng.random() < 0.3:
            clutter = [160.0, 20.0, 20.0, 40.0]
            predictions.append(
                {
                    "image_id": image_id,
                    "bbox": clutter,
                    "category_id": int(rng.integers(1, 11)),
                    "score": next(scores),
                }
            )
    gt = {"images": images, "annotations": annotations, "categories": coco_categories()}
    return gt, predictions


def resampled_split(
    gt: dict[str, Any], predictions: list[dict[str, Any]], counts: np.ndarray
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The split written out as a resample would draw it: image i repeated counts[i] times, each copy a
    new image with its own id."""
    images, annotations, rows = [], [], []
    for index, image in enumerate(gt["images"]):
        for _ in range(int(counts[index])):
            new_id = len(images) + 1
            images.append({**image, "id": new_id})
            for a in gt["annotations"]:
                if a["image_id"] == image["id"]:
                    annotations.append({**a, "id": len(annotations) + 1, "image_id": new_id})
            rows += [{**p, "image_id": new_id} for p in predictions if p["image_id"] == image["id"]]
    return {**gt, "images": images, "annotations": annotations}, rows


def test_unit_weights_give_pycocotools_figures() -> None:
    gt, predictions = make_split()
    table = match_table(gt, predictions)
    expected = coco_map(gt, predictions)
    assert 0.2 < expected["map"] < 0.95  # imperfect on purpose
    assert weighted_map(table, np.ones(N_IMAGES)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integer_weights_match_the_resample_written_out(seed: int) -> None:
    gt, predictions = make_split(seed)
    counts = resample_weights(N_IMAGES, 1, seed=seed + 10)[0]
    assert (counts == 0).any() and (counts > 1).any()
    expected = coco_map(*resampled_split(gt, predictions, counts))
    assert weighted_map(match_table(gt, predictions), counts) == pytest.approx(expected, abs=1e-12)


def test_a_category_whose_labels_are_not_drawn_is_left_out() -> None:
    gt, predictions = make_split()
    for a in gt["annotations"]:  # digit 9 (category 10) labelled on image 1 only, detected elsewhere too
        a["category_id"] = 10 if a["id"] == 1 else 9 if a["category_id"] == 10 else a["category_id"]
    assert gt["annotations"][0]["image_id"] == 1
    predictions.append({"image_id": 2, "bbox": [150.0, 5.0, 20.0, 40.0], "category_id": 10, "score": 0.9999})
    counts = np.ones(N_IMAGES)
    counts[0] = 0
    expected = coco_map(*resampled_split(gt, predictions, counts))
    table = match_table(gt, predictions)
    assert weighted_map(table, counts) == pytest.approx(expected, abs=1e-12)
    assert weighted_map(table, counts)["map"] != pytest.approx(weighted_map(table, np.ones(N_IMAGES))["map"])


def test_no_detections_score_zero() -> None:
    gt, _ = make_split()
    table = match_table(gt, [])
    assert weighted_map(table, np.ones(N_IMAGES)) == {"map": 0.0, "map50": 0.0, "map75": 0.0}


def test_resample_weights_draw_each_split_size_reproducibly() -> None:
    weights = resample_weights(50, 200, seed=3)
    assert weights.shape == (200, 50) and (weights.sum(axis=1) == 50).all()
    assert np.array_equal(weights, resample_weights(50, 200, seed=3))
    assert not np.array_equal(weights, resample_weights(50, 200, seed=4))
    assert weights.mean() == pytest.approx(1.0)


def test_intervals_hold_the_estimate_and_collapse_when_every_image_is_alike() -> None:
    gt, predictions = make_split()
    table = match_table(gt, predictions)
    right = np.arange(N_IMAGES) % 3 != 0
    result = bootstrap_metrics(table, right, samples=300)
    assert result["accuracy"]["estimate"] == pytest.approx(right.mean())
    assert result["map"]["estimate"] == pytest.approx(coco_map(gt, predictions)["map"])
    for name in ("map", "map50", "map75", "accuracy"):
        span = result[name]
        assert span["low"] <= span["estimate"] <= span["high"] and span["standard_error"] > 0
    # Accuracy of a proportion: the bootstrap's standard error is close to sqrt(p (1 - p) / n).
    p = right.mean()
    assert result["accuracy"]["standard_error"] == pytest.approx(np.sqrt(p * (1 - p) / N_IMAGES), rel=0.2)
    perfect = bootstrap_metrics(
        match_table(gt, [{**a, "score": 1.0} for a in gt["annotations"]]), right | True, 50
    )
    for name in ("map", "accuracy"):
        assert perfect[name] == {"estimate": 1.0, "standard_error": 0.0, "low": 1.0, "high": 1.0}


def test_paired_differences_of_a_model_with_itself_are_zero_and_of_a_better_one_positive() -> None:
    gt, predictions = make_split()
    table = match_table(gt, predictions)
    right = np.arange(N_IMAGES) % 4 != 0
    same = paired_bootstrap(table, table, right, right, samples=100)
    assert same["map"] == {"estimate": 0.0, "standard_error": 0.0, "low": 0.0, "high": 0.0}
    exact = [{**a, "score": 1.0} for a in gt["annotations"]]
    better = paired_bootstrap(table, match_table(gt, exact), right, right | True, samples=300)
    assert better["map"]["estimate"] == pytest.approx(1.0 - coco_map(gt, predictions)["map"])
    assert 0.0 < better["map"]["low"] <= better["map"]["high"]
    assert better["accuracy"]["estimate"] == pytest.approx(0.25) and better["accuracy"]["low"] > 0.0


def test_paired_bootstrap_refuses_tables_of_other_images() -> None:
    gt, predictions = make_split()
    fewer = {**gt, "images": gt["images"][1:]}
    fewer["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 1]
    rows = [p for p in predictions if p["image_id"] != 1]
    right = np.ones(N_IMAGES, dtype=bool)
    with pytest.raises(ValueError, match="different images"):
        paired_bootstrap(match_table(gt, predictions), match_table(fewer, rows), right, right[1:], 10)


def test_right_flags_must_cover_every_image() -> None:
    gt, predictions = make_split()
    with pytest.raises(ValueError, match="flags for"):
        bootstrap_metrics(match_table(gt, predictions), np.ones(N_IMAGES - 1, dtype=bool), 10)


def test_interval_is_the_central_95_percent_of_the_resamples() -> None:
    values = np.arange(1001, dtype=float)  # quantiles fall on whole values
    span = interval(500.0, values)
    assert (span.low, span.high) == (pytest.approx(25.0), pytest.approx(975.0))
    assert span.standard_error == pytest.approx(np.std(values, ddof=1)) and span.estimate == 500.0
