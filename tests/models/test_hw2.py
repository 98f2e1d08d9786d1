"""models.hw2: the Task 2 pred.csv and the Task 1 pred.json written and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.assembly import Detection
from models.hw2 import image_ids_for, read_pred_csv, read_pred_json, write_pred_csv, write_pred_json


def test_pred_csv_round_trip(tmp_path: Path) -> None:
    numbers = {17: 305, 2: -1, 9: 7}
    write_pred_csv(tmp_path / "pred.csv", numbers)
    assert (tmp_path / "pred.csv").read_text().splitlines() == [
        "image_id,pred_label",
        "2,-1",
        "9,7",
        "17,305",
    ]
    assert read_pred_csv(tmp_path / "pred.csv") == numbers


def test_a_submission_file_whose_write_fails_halfway_keeps_its_old_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pred_csv(tmp_path / "pred.csv", {1: 7})
    write_pred_json(tmp_path / "pred.json", {1: [Detection((0.0, 0.0, 4.0, 8.0), 7, 0.9)]})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def half_then_full_disk(path: Path, data: str | bytes, *args: object, **kwargs: object) -> int:
        with path.open("wb") as handle:
            handle.write((data if isinstance(data, bytes) else data.encode())[:5])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full_disk)
    monkeypatch.setattr(Path, "write_bytes", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        write_pred_csv(tmp_path / "pred.csv", {1: 7, 2: 10})
    with pytest.raises(OSError, match="No space"):
        write_pred_json(tmp_path / "pred.json", {})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_read_pred_csv_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_pred_csv(tmp_path / "pred.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,pred_label\n1,seven\n")
    with pytest.raises(ValueError, match="integer"):
        read_pred_csv(bad)
    bad.write_text("id,label\n1,7\n")
    with pytest.raises(ValueError, match="integer"):
        read_pred_csv(bad)


def test_read_pred_json_reads_a_coco_results_file(tmp_path: Path) -> None:
    rows = [
        {"image_id": 1, "bbox": [10, 11, 10, 20], "category_id": 5, "score": 0.7},
        {"image_id": 2, "bbox": [60, 35, 10, 20], "category_id": 1, "score": 0.8},
    ]
    (tmp_path / "pred.json").write_text(json.dumps(rows))
    found = read_pred_json(tmp_path / "pred.json")
    assert found == {
        1: [Detection((10, 11, 20, 31), 4, 0.7)],
        2: [Detection((60, 35, 70, 55), 0, 0.8)],
    }
    write_pred_json(tmp_path / "again.json", found)  # and back: the writer's rows
    assert read_pred_json(tmp_path / "again.json") == found


def test_task1_scores_are_ranking_scores_when_a_refiner_judged_the_fit(tmp_path: Path) -> None:
    found = {3: [Detection((0, 0, 10, 20), 7, 0.9, fit=0.5), Detection((20, 0, 30, 20), 1, 0.8)]}
    write_pred_json(tmp_path / "pred.json", found)
    rows = json.loads((tmp_path / "pred.json").read_text())
    assert [r["score"] for r in rows] == [pytest.approx(0.45), pytest.approx(0.8)]
    assert found[3][0].ranking_score == pytest.approx(0.45) and found[3][1].ranking_score == 0.8


def test_image_ids_are_numeric_stems_only_when_all_are_and_none_repeats() -> None:
    assert image_ids_for([Path("a/17.png"), Path("a/3.png")]) == [17, 3]
    assert image_ids_for([Path("a/17.png"), Path("a/x.png")]) == [1, 2]
    # 1.png in two folders (a phone's 100APPLE and 101APPLE): places, not the id 1 twice
    assert image_ids_for([Path("a/1.png"), Path("b/1.png"), Path("b/2.png")]) == [1, 2, 3]
    assert image_ids_for([Path("a/01.png"), Path("b/1.png")]) == [1, 2]  # the same number, spelt apart
