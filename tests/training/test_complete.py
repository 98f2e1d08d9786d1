"""Completing labels with confident row-mates: the pure rule, the COCO edit and the training hook."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from models.assembly import Detection
from training import complete
from training.complete import CompleteParams, add_pseudo_labels, row_mates
from training.config import load_config
from training.data import DigitBox, ImageRecord, load_coco_split
from training.train import load_splits, train_annotation_files

PARAMS = CompleteParams()


def _record(*boxes: tuple[float, float, float, float, int]) -> ImageRecord:
    return ImageRecord(
        image_id=7,
        path=Path("7.png"),
        width=200,
        height=80,
        boxes=tuple(DigitBox(box_xyxy=b[:4], digit=b[4]) for b in boxes),
    )


def _det(x1: float, y1: float, x2: float, y2: float, digit: int = 4, score: float = 0.95) -> Detection:
    return Detection(box_xyxy=(x1, y1, x2, y2), digit=digit, score=score)


# A photo of "242" labelled only with its middle digit: 20 px wide, 50 px high digits in a row.
MIDDLE = _record((60, 10, 80, 60, 4))
LEFT, RIGHT = _det(37, 11, 57, 61, digit=2), _det(83, 9, 103, 59, digit=2)


def test_unlabelled_digits_beside_the_labelled_ones_are_found() -> None:
    found = row_mates(MIDDLE, [RIGHT, LEFT, _det(60, 10, 80, 60)], PARAMS)
    assert found == [RIGHT, LEFT] or found == [LEFT, RIGHT]
    assert {d.digit for d in found} == {2}


def test_labelled_digits_weak_and_overlapping_detections_are_not_added() -> None:
    assert row_mates(MIDDLE, [_det(61, 10, 81, 60)], PARAMS) == []  # the labelled digit itself
    assert row_mates(MIDDLE, [replace(LEFT, score=0.85)], PARAMS) == []
    # Two detections of one unlabelled digit give one pseudo-label, the better one.
    found = row_mates(MIDDLE, [replace(LEFT, score=0.91), _det(38, 11, 58, 61, score=0.97)], PARAMS)
    assert [d.score for d in found] == [0.97]


def test_detections_off_the_labelled_row_are_not_added() -> None:
    assert row_mates(MIDDLE, [_det(37, 45, 57, 95)], PARAMS) == []  # below the row
    assert row_mates(MIDDLE, [_det(45, 20, 55, 35)], PARAMS) == []  # too small: a door sign
    assert row_mates(MIDDLE, [_det(10, 0, 50, 80)], PARAMS) == []  # too tall
    assert row_mates(MIDDLE, [_det(140, 10, 160, 60)], PARAMS) == []  # 60 px away: another number
    assert row_mates(_record(), [LEFT], PARAMS) == []  # no labelled box: nothing to complete


def test_the_rule_follows_its_parameters() -> None:
    far = _det(125, 10, 145, 60)  # 45 px right of the labelled digit: 0.9 of its height
    assert row_mates(MIDDLE, [far], PARAMS) == [far]
    assert row_mates(MIDDLE, [far], replace(PARAMS, max_gap=0.5)) == []
    assert row_mates(MIDDLE, [replace(LEFT, score=0.85)], replace(PARAMS, score=0.8)) != []


def test_pseudo_labels_are_appended_as_coco_boxes() -> None:
    doc: dict[str, Any] = {
        "images": [{"id": 7}],
        "annotations": [{"id": 3, "image_id": 7, "category_id": 5, "bbox": [60, 10, 20, 50]}],
        "categories": [],
    }
    out = add_pseudo_labels(doc, {7: [LEFT]})
    assert out["annotations"][0] == doc["annotations"][0]
    added = out["annotations"][1]
    assert added["id"] == 4 and added["image_id"] == 7 and added["pseudo"] is True
    assert added["category_id"] == 3  # digit 2
    assert added["bbox"] == [37, 11, 20, 50] and added["area"] == 1000
    assert len(doc["annotations"]) == 1  # the input is not modified


@pytest.mark.slow
def test_cli_adds_only_row_mates_and_reports_them(trained_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "completed.json"
    args = ["--checkpoint", str(trained_run / "best"), "--images", str(synth_dir / "train")]
    args += ["--annotations", str(synth_dir / "train.json"), "--out", str(out), "--workers", "0"]
    # With every labelled box and a loose rule, each image's detections beside its labels come back.
    report = complete.main([*args, "--score", "0.0", "--max-gap", "100", "--min-row-overlap", "0.0"])
    doc = json.loads(out.read_text())
    original = json.loads((synth_dir / "train.json").read_text())
    added = doc["annotations"][len(original["annotations"]) :]
    assert doc["annotations"][: len(original["annotations"])] == original["annotations"]
    assert len(added) == report["boxes_added"] and {a["image_id"] for a in added} == set(
        report["completed_image_ids"]
    )
    assert all(a["pseudo"] is True and 1 <= a["category_id"] <= 10 for a in added)
    assert json.loads(out.with_suffix(".report.json").read_text()) == report
    completed, _ = load_coco_split(synth_dir / "train", out)
    assert sum(len(r.boxes) for r in completed) == len(original["annotations"]) + len(added)
    # No detection scores above 1: nothing is added.
    strict = complete.main([*args, "--score", "1.01"])
    assert strict["boxes_added"] == 0 and json.loads(out.read_text()) == original


def test_training_reads_a_completed_main_json_outside_the_data_root(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads((synth_dir / "train.json").read_text())
    first = doc["annotations"][0]
    x, y, w, h = first["bbox"]
    pseudo = _det(x + w + 1, y, x + 2 * w + 1, y + h, digit=0)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "completed.json").write_text(
        json.dumps(add_pseudo_labels(doc, {first["image_id"]: [pseudo]}))
    )
    monkeypatch.chdir(tmp_path)
    base = load_config("fast")
    plain = replace(base, data=replace(base.data, root=str(synth_dir)))
    config = replace(plain, data=replace(plain.data, train_json="runs/completed.json"))
    assert train_annotation_files(config)[0] == Path("runs/completed.json")
    assert train_annotation_files(plain)[0] == synth_dir / "train.json"
    train, _, fingerprint = load_splits(config)
    before, _, plain_fingerprint = load_splits(plain)
    grown = {r.image_id: r for r in train}[first["image_id"]].boxes
    kept = {r.image_id: r for r in before}[first["image_id"]].boxes
    assert grown[: len(kept)] == kept and len(grown) == len(kept) + 1 and grown[-1].digit == 0
    assert fingerprint != plain_fingerprint
