"""Vetting uncertain labels: the pure agreement rule, the COCO filter, the CLI and the training hook."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from models.assembly import Detection
from training import vet
from training.config import load_config
from training.data import DigitBox, ImageRecord, load_coco_split
from training.train import load_splits
from training.vet import VetParams, filter_coco, vet_reason

PARAMS = VetParams()


def _record(image_id: int, *boxes: tuple[float, float, float, float, int]) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        path=Path(f"{image_id}.png"),
        width=200,
        height=80,
        boxes=tuple(DigitBox(box_xyxy=b[:4], digit=b[4]) for b in boxes),
    )


def _oracle(record: ImageRecord, score: float = 0.9) -> list[Detection]:
    """What a perfect detector would say about `record`'s photo."""
    return [Detection(box_xyxy=b.box_xyxy, digit=b.digit, score=score) for b in record.boxes]


A = _record(1, (10, 10, 30, 60, 1), (32, 10, 52, 60, 2))
B = _record(2, (120, 20, 140, 70, 7))


def test_labels_that_match_the_photo_are_kept() -> None:
    assert vet_reason(A, _oracle(A), PARAMS) == ""
    assert vet_reason(B, _oracle(B), PARAMS) == ""


def test_labels_from_another_photo_are_dropped() -> None:
    assert vet_reason(A, _oracle(B), PARAMS) == "labelled box not detected"
    assert vet_reason(B, _oracle(A), PARAMS) == "labelled box not detected"


def test_a_digit_the_labels_miss_drops_the_image() -> None:
    only_first = replace(A, boxes=A.boxes[:1])
    assert vet_reason(only_first, _oracle(A), PARAMS) == "confident detection not labelled"
    # An unconfident extra detection is not evidence enough.
    assert vet_reason(only_first, _oracle(A, score=0.5), PARAMS) == ""


def test_the_check_ignores_classes_and_weak_detections() -> None:
    wrong_digits = [replace(d, digit=(d.digit + 3) % 10) for d in _oracle(A)]
    assert vet_reason(A, wrong_digits, PARAMS) == ""
    assert vet_reason(A, _oracle(A, score=0.1), PARAMS) == "labelled box not detected"
    shifted = [replace(d, box_xyxy=(d.box_xyxy[0] + 12, *d.box_xyxy[1:])) for d in _oracle(A)]
    assert vet_reason(A, shifted, PARAMS) == "labelled box not detected"
    assert vet_reason(_record(3), [], PARAMS) == "no labelled box"


def test_filter_coco_keeps_the_chosen_images_and_their_boxes() -> None:
    doc: dict[str, Any] = {
        "images": [{"id": 1}, {"id": 2}, {"id": 3}],
        "annotations": [{"id": 10, "image_id": 1}, {"id": 11, "image_id": 2}, {"id": 12, "image_id": 2}],
        "categories": [{"id": 1, "name": "0"}],
    }
    out = filter_coco(doc, {2, 3})
    assert [im["id"] for im in out["images"]] == [2, 3]
    assert [a["id"] for a in out["annotations"]] == [11, 12]
    assert out["categories"] == doc["categories"] and len(doc["images"]) == 3


@pytest.mark.slow
def test_cli_writes_a_loadable_subset_and_a_report(
    trained_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vetted.json"
    common = ["--checkpoint", str(trained_run / "best"), "--images", str(synth_dir / "train")]
    common += ["--annotations", str(synth_dir / "train.json"), "--out", str(out), "--workers", "0"]
    report = vet.main([*common, "--match-score", "0.0", "--match-iou", "0.0"])
    original, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    kept, _ = load_coco_split(synth_dir / "train", out)
    assert report["images"] == len(original) == report["kept"] + sum(report["dropped"].values())
    assert report["kept"] == len(kept)
    by_id = {r.image_id: r for r in original}
    assert all(by_id[r.image_id] == r for r in kept)
    assert json.loads(out.with_suffix(".report.json").read_text()) == report
    # No detector output reaches IoU 1.01: every image is dropped for a missed box.
    strict = vet.main([*common, "--match-iou", "1.01"])
    assert strict["kept"] == 0 and strict["dropped"] == {"labelled box not detected": len(original)}


def test_training_reads_an_extra_json_outside_the_data_root(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads((synth_dir / "train.json").read_text())
    first = doc["images"][0]["id"]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "extra.json").write_text(json.dumps(filter_coco(doc, {first})))
    monkeypatch.chdir(tmp_path)
    base = load_config("fast")
    data = replace(base.data, root=str(synth_dir), extra_train_json=("runs/extra.json",))
    config = replace(base, data=data)
    train, _, fingerprint = load_splits(config)
    plain, _, plain_fingerprint = load_splits(replace(config, data=replace(data, extra_train_json=())))
    assert len(train) == len(plain) + 1 and train[-1].image_id == first
    assert fingerprint != plain_fingerprint
