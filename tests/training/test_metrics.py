from pathlib import Path

import numpy as np
import pytest

from models.assembly import AssemblyParams, Detection
from models.hw2 import detections_to_coco
from training.data import DigitBox, ImageRecord, load_coco_split
from training.metrics import (
    alternatives_coverage,
    coco_map,
    confidence_report,
    confirm_candidates,
    confirmation_rates,
    confusion_matrix,
    digit_outcomes,
    ground_truth_coco,
    number_accuracy,
    number_confidences,
    predicted_numbers,
    street_rates,
)


@pytest.fixture
def records(synth_dir: Path) -> list[ImageRecord]:
    return load_coco_split(synth_dir / "valid", synth_dir / "valid.json")[0]


def as_detections(records: list[ImageRecord]) -> dict[int, list[Detection]]:
    return {r.image_id: [Detection(b.box_xyxy, b.digit, 1.0) for b in r.boxes] for r in records}


def test_ground_truth_as_predictions_scores_perfectly(records: list[ImageRecord]) -> None:
    dets = as_detections(records)
    scores = coco_map(ground_truth_coco(records), detections_to_coco(dets))
    assert scores["map"] == pytest.approx(1.0) and scores["map50"] == pytest.approx(1.0)
    numbers = predicted_numbers(dets, [r.image_id for r in records], AssemblyParams())
    assert number_accuracy(records, numbers) == 1.0


def test_empty_predictions_score_zero(records: list[ImageRecord]) -> None:
    assert coco_map(ground_truth_coco(records), [])["map"] == 0.0
    numbers = predicted_numbers({}, [r.image_id for r in records], AssemblyParams())
    assert set(numbers.values()) == {-1}
    assert number_accuracy(records, numbers) == 0.0


def test_wrong_digit_lowers_map_and_accuracy(records: list[ImageRecord]) -> None:
    dets = as_detections(records)
    first = records[0]
    dets[first.image_id] = [Detection(b.box_xyxy, (b.digit + 1) % 10, 1.0) for b in first.boxes]
    assert coco_map(ground_truth_coco(records), detections_to_coco(dets))["map"] < 1.0
    numbers = predicted_numbers(dets, [r.image_id for r in records], AssemblyParams())
    assert number_accuracy(records, numbers) == pytest.approx(1 - 1 / len(records))


def test_pred_json_rows_use_xywh_and_digit_plus_one() -> None:
    rows = detections_to_coco({5: [Detection((10, 20, 15, 40), 0, 0.9)]})
    assert rows == [{"image_id": 5, "bbox": [10, 20, 5, 20], "score": 0.9, "category_id": 1}]


def test_confusion_matrix_counts_hits_swaps_misses_and_false_alarms(tmp_path: Path) -> None:
    record = ImageRecord(
        1,
        tmp_path / "1.png",
        100,
        50,
        (DigitBox((0, 0, 10, 20), 3), DigitBox((20, 0, 30, 20), 4), DigitBox((40, 0, 50, 20), 5)),
    )
    dets = {
        1: [
            Detection((0, 0, 10, 20), 3, 0.9),
            Detection((20, 0, 30, 20), 7, 0.9),
            Detection((70, 0, 80, 20), 1, 0.9),
        ]
    }
    matrix = confusion_matrix([record], dets, AssemblyParams())
    expected = np.zeros((11, 11), dtype=np.int64)
    expected[3, 3] = expected[4, 7] = expected[5, 10] = expected[10, 1] = 1
    assert np.array_equal(matrix, expected)


def test_digit_outcomes_sort_each_truth_box_by_what_overlaps_it(tmp_path: Path) -> None:
    truth = [DigitBox((x, 0, x + 10, 20), d) for x, d in ((0, 1), (20, 2), (40, 3), (60, 4), (80, 5))]
    record = ImageRecord(1, tmp_path / "1.png", 100, 20, tuple(truth))
    dets = {
        1: [
            Detection((0, 0, 10, 20), 1, 0.9),  # 1: found
            Detection((1, 0, 11, 20), 7, 0.95),  # a confident wrong twin does not undo "found"
            Detection((20, 0, 30, 20), 8, 0.8),  # 2: only another digit is confident
            Detection((20, 0, 30, 20), 2, 0.5),
            Detection((40, 0, 50, 20), 3, 0.4),  # 3: the right digit, under the threshold
            Detection((66, 0, 76, 20), 4, 0.99),  # 4: IoU 4/16 = 0.25 < 0.5
        ]
    }  # 5: nothing at all
    counts = digit_outcomes([record], dets, score_threshold=0.6)
    assert counts == {"found": 1, "wrong_digit": 1, "below_threshold": 1, "not_localised": 2}
    assert digit_outcomes([record], dets, score_threshold=0.3)["found"] == 3  # 2 and 3 too
    assert sum(digit_outcomes([record], {}, 0.6).values()) == 5


def labelled(tmp_path: Path, image_id: int, digits: list[int]) -> ImageRecord:
    """A record whose digits stand side by side, 10 px apart."""
    boxes = tuple(DigitBox((10.0 * i, 0.0, 10.0 * i + 8, 20.0), d) for i, d in enumerate(digits))
    return ImageRecord(image_id, tmp_path / f"{image_id}.png", 60, 30, boxes)


def test_number_confidences_are_the_assembled_numbers_and_whether_they_are_right(tmp_path: Path) -> None:
    def record(image_id: int, digits: list[int]) -> ImageRecord:
        return labelled(tmp_path, image_id, digits)

    right, wrong, empty = record(1, [4, 2]), record(2, [7]), record(3, [5])
    detections = {
        1: [Detection(b.box_xyxy, b.digit, s) for b, s in zip(right.boxes, (0.9, 0.8), strict=True)],
        2: [Detection(wrong.boxes[0].box_xyxy, 1, 0.95), Detection((40, 0, 48, 20), 3, 0.4)],
    }
    confidences, correct = number_confidences([right, wrong, empty], detections, AssemblyParams())
    assert confidences == pytest.approx([0.72, 0.95, 0.0])  # the 0.4 detection is under the threshold
    assert correct.tolist() == [True, False, False]


def test_confidence_report_bins_and_coverage() -> None:
    confidences = np.array([0.99, 0.97, 0.96, 0.92, 0.85, 0.6, 0.3, 1.0])
    right = np.array([True, True, False, True, False, True, False, True])
    report = confidence_report(confidences, right, edges=(0.0, 0.5, 0.9, 1.0), coverages=(0.5, 1.0))
    assert [(b["images"], b["right"]) for b in report["bins"]] == [(1, 0), (2, 1), (5, 4)]
    top = report["bins"][2]
    assert top["accuracy"] == pytest.approx(0.8) and top["mean_confidence"] == pytest.approx(0.968)
    half, everything = report["coverage"]
    assert half["images"] == 4 and half["accuracy"] == pytest.approx(0.75)  # 1.0, 0.99, 0.97, 0.96
    assert half["min_confidence"] == pytest.approx(0.96)
    assert everything["accuracy"] == pytest.approx(5 / 8) and everything["min_confidence"] == pytest.approx(
        0.3
    )


def test_confidence_report_keeps_empty_bins_at_zero_and_refuses_mismatched_input() -> None:
    report = confidence_report(np.array([0.95]), np.array([True]), edges=(0.0, 0.5, 1.0), coverages=(1.0,))
    assert report["bins"][0] == {
        "low": 0.0,
        "high": 0.5,
        "images": 0,
        "right": 0,
        "accuracy": 0.0,
        "mean_confidence": 0.0,
    }
    assert confidence_report(np.array([]), np.array([], dtype=bool))["coverage"] == []
    with pytest.raises(ValueError, match="must be equal"):
        confidence_report(np.array([0.5, 0.6]), np.array([True]))


def test_alternatives_coverage_counts_the_label_at_its_rank_among_the_alternatives(tmp_path: Path) -> None:
    numbers = [[4, 2], [7], [1, 5], [3]]
    right, swapped, missed, lost = (labelled(tmp_path, i, d) for i, d in enumerate(numbers))
    box = [r.boxes for r in (right, swapped, missed, lost)]
    sites = {
        0: [Detection(b.box_xyxy, b.digit, 0.9) for b in box[0]],  # read right: k >= 0
        1: [Detection(box[1][0].box_xyxy, 1, 0.95)],  # a 1, the detector's second thought 7: k >= 1
        2: [Detection(box[2][0].box_xyxy, 1, 0.4), Detection(box[2][1].box_xyxy, 5, 0.99)],  # the 1 left out
    }
    detections = {1: [*sites[1], Detection(box[1][0].box_xyxy, 7, 0.2)], 2: sites[2]}
    sites[2].append(Detection((25.0, 0.0, 33.0, 20.0), 8, 0.5))  # a surer 8 beside: inserted first
    rows = alternatives_coverage([right, swapped, missed, lost], sites, detections, AssemblyParams(), most=3)
    assert [row["k"] for row in rows] == [0, 1, 2, 3]
    assert [row["right"] for row in rows] == [1, 2, 3, 3]  # 3 has nothing read: never among them
    assert [row["share"] for row in rows] == pytest.approx([0.25, 0.5, 0.75, 0.75])


def test_confirm_candidates_are_each_kind_of_number_once_without_the_label() -> None:
    kinds = confirm_candidates(105, 42)
    assert (
        kinds["label"] == [105]
        and kinds["neighbour"] == [103, 104, 106, 107]
        and kinds["other photo"] == [42]
    )
    assert kinds["digit dropped"] == [5, 15, 10]  # "05" is 5
    # 27 swaps less 005 (5, dropped already) and 103, 104, 106, 107 (neighbours)
    assert len(kinds["digit swapped"]) == 22 and {205, 195, 109} <= set(kinds["digit swapped"])
    assert {1005, 1050, 1105, 1205, 5105, 9105, 1, 8} & set(kinds["digit added"]) == {
        1005,
        1050,
        1105,
        1205,
        5105,
        9105,
    }
    everything = [n for numbers in kinds.values() for n in numbers]
    assert len(everything) == len(set(everything))  # no number twice: 106 is a neighbour, not a swap
    assert 106 not in kinds["digit swapped"] and 105 not in everything[1:]
    single = confirm_candidates(0, 0)
    assert single["neighbour"] == [1, 2] and single["other photo"] == [] and single["digit dropped"] == []


def test_confirmation_rates_count_what_passes_at_each_min_score(tmp_path: Path) -> None:
    right, missed = labelled(tmp_path, 0, [4, 2]), labelled(tmp_path, 1, [1, 5])
    box = [r.boxes for r in (right, missed)]
    sites = {
        0: [Detection(b.box_xyxy, b.digit, 0.85) for b in box[0]],  # 42 read; 4 or 2 dropped at 0.15
        1: [Detection(box[1][0].box_xyxy, 1, 0.3), Detection(box[1][1].box_xyxy, 5, 0.99)],  # 5; 15 at 0.3
    }
    blank = labelled(tmp_path, 2, [])  # no digit labelled: nothing to ask about
    report = confirmation_rates([right, blank, missed], sites, sites, AssemblyParams(), grid=(None, 0.3, 0.1))
    asked = [confirm_candidates(42, 15), confirm_candidates(15, 42)]
    assert report["pairs"] == {k: len(asked[0][k]) + len(asked[1][k]) for k in asked[0]}
    assert report["pairs"]["digit dropped"] == 4 and report["pairs"]["neighbour"] == 8
    rows = {row["min_score"]: row for row in report["rows"]}
    assert [rows[t]["label"] for t in (None, 0.3, 0.1)] == [0.5, 1.0, 1.0]
    # 5 (15 less its 1) is read from photo 1; 4 and 2 (42 less a digit) pass from 0.15
    assert [rows[t]["digit dropped"] for t in (None, 0.3, 0.1)] == [0.25, 0.25, 0.75]
    assert all(
        rows[t][k] == 0.0 for t in rows for k in ("neighbour", "other photo", "digit swapped", "digit added")
    )


def test_street_rates_count_which_of_the_streets_numbers_each_photo_is_said_to_show(tmp_path: Path) -> None:
    right, missed, other = (labelled(tmp_path, i, d) for i, d in enumerate([[4, 2], [1, 5], [2, 0]]))
    box = [r.boxes for r in (right, missed, other)]
    sites = {
        0: [Detection(b.box_xyxy, b.digit, 0.85) for b in box[0]],  # 42 read: the label
        1: [Detection(box[1][0].box_xyxy, 1, 0.3), Detection(box[1][1].box_xyxy, 5, 0.99)],  # 5; 15 at 0.3
        2: [
            Detection(box[2][0].box_xyxy, 2, 0.9),
            Detection(box[2][1].box_xyxy, 2, 0.9),
        ],  # 22: the next house
    }
    blank = labelled(tmp_path, 3, [])
    rows = street_rates([right, missed, other, blank], sites, sites, AssemblyParams(), grid=(None, 0.3))
    assert rows == [
        {"min_score": None, "right": 1, "wrong": 1, "none": 1},  # 5 is not on 15's street (11-19)
        {"min_score": 0.3, "right": 2, "wrong": 1, "none": 0},
    ]
    report = confirmation_rates([right, missed, other], sites, sites, AssemblyParams(), grid=(None, 0.3))
    assert report["street"] == rows
