"""training.compare: paired counts, McNemar, error kinds, and the command on a synthetic split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from models.assembly import Detection
from models.hw2 import write_pred_csv, write_pred_json
from training import compare
from training.data import load_coco_split


def test_paired_counts_cross_right_and_wrong() -> None:
    truth = {1: 12, 2: 5, 3: 7, 4: 301, 5: 9}
    a = {1: 12, 2: 5, 3: 1, 4: 31, 5: 9}  # right on 1, 2, 5
    b = {1: 12, 2: 6, 3: 7, 4: 30}  # right on 1, 3; 5 missing reads -1
    counts = compare.paired_counts(truth, a, b)
    assert counts == compare.PairedCounts(both_right=1, only_a=2, only_b=1, both_wrong=1)
    assert counts.total == 5


def test_mcnemar_z_and_exact_p() -> None:
    z, p = compare.mcnemar(44, 16)
    assert z == pytest.approx(28 / math.sqrt(60))
    assert p < 0.001
    # 5 to 0: a fair coin gives this split (either way) with probability 2 / 32.
    assert compare.mcnemar(0, 5) == (pytest.approx(-math.sqrt(5)), pytest.approx(0.0625))
    # An even split is no evidence at all.
    assert compare.mcnemar(7, 7) == (0.0, 1.0)
    assert compare.mcnemar(0, 0) == (0.0, 1.0)


def test_error_kinds() -> None:
    assert compare.error_kind(23, -1) == "no digit"
    assert compare.error_kind(123, 23) == "missed digit"
    assert compare.error_kind(25, 125) == "extra digit"
    assert compare.error_kind(17, 11) == "same length"
    assert compare.error_kind(-1, 7) == "extra digit"  # an image without digits, read as 7
    truth = {1: 23, 2: 123, 3: 25, 4: 17, 5: 8}
    pred = {1: -1, 2: 23, 3: 125, 4: 11, 5: 8}
    assert compare.error_kinds(truth, pred) == {
        "no digit": 1,
        "missed digit": 1,
        "extra digit": 1,
        "same length": 1,
    }


def test_compare_accuracies_match_counts() -> None:
    truth = {i: i for i in range(10)}
    a = {i: i for i in range(8)} | {8: 0, 9: 0}
    b = {i: i for i in range(5)} | {i: -1 for i in range(5, 10)}
    result = compare.compare(truth, a, b)
    assert result["accuracy_a"] == pytest.approx(0.8)
    assert result["accuracy_b"] == pytest.approx(0.5)
    assert result["paired"] == {"both_right": 5, "only_a": 3, "only_b": 0, "both_wrong": 2}
    assert result["errors_b"]["no digit"] == 5
    assert result["p_value"] == pytest.approx(0.25)


def _write_pred(folder: Path, numbers: dict[int, int]) -> Path:
    folder.mkdir()
    write_pred_csv(folder / "pred.csv", numbers)
    return folder


def test_command_on_synthetic_split(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records, _ = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")
    truth = {r.image_id: r.number for r in records}
    ids = sorted(truth)
    perfect = _write_pred(tmp_path / "perfect", truth)
    blind = _write_pred(tmp_path / "blind", dict.fromkeys(ids, -1))
    out = tmp_path / "result.json"
    result = compare.main([str(blind), str(perfect), "--data", str(synth_dir), "--json", str(out)])
    assert result["images"] == len(ids)
    assert result["paired"]["only_b"] == len(ids) and result["paired"]["only_a"] == 0
    assert result["errors_a"]["no digit"] == len(ids)
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out
    assert f"only B right {len(ids)}" in printed and "accuracy  A 0.0000  B 1.0000" in printed


def test_command_refuses_predictions_for_another_split(synth_dir: Path, tmp_path: Path) -> None:
    records, _ = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")
    truth = {r.image_id: r.number for r in records}
    full = _write_pred(tmp_path / "full", truth)
    partial = _write_pred(tmp_path / "partial", dict(list(truth.items())[1:]))
    with pytest.raises(SystemExit, match="covers"):
        compare.main([str(full), str(partial), "--data", str(synth_dir)])


def test_command_gives_paired_intervals_where_both_folders_hold_detections(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records, _ = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")
    truth = {r.image_id: r.number for r in records}
    perfect = _write_pred(tmp_path / "perfect", truth)
    write_pred_json(
        perfect / "pred.json",
        {r.image_id: [Detection(b.box_xyxy, b.digit, 1.0) for b in r.boxes] for r in records},
    )
    blind = _write_pred(tmp_path / "blind", dict.fromkeys(truth, -1))
    write_pred_json(blind / "pred.json", {})
    result = compare.main([str(blind), str(perfect), "--data", str(synth_dir), "--bootstrap", "50"])
    intervals = result["bootstrap"]
    assert (intervals["map_a"], intervals["map_b"]) == (0.0, pytest.approx(1.0))
    for name in ("map", "accuracy"):
        span = intervals["b_minus_a"][name]
        assert span["estimate"] == pytest.approx(1.0) and span["low"] == pytest.approx(1.0)
    assert intervals["b_minus_a"]["samples"] == 50
    printed = capsys.readouterr().out
    assert (
        "B - A map      +1.0000, 95% paired bootstrap interval +1.0000 to +1.0000 (50 resamples)" in printed
    )
    # Without detections on one side, or with --bootstrap 0, there is nothing to resample.
    (blind / "pred.json").unlink()
    assert "bootstrap" not in compare.main([str(blind), str(perfect), "--data", str(synth_dir)])
    assert "bootstrap" not in compare.main(
        [str(perfect), str(perfect), "--data", str(synth_dir), "--bootstrap", "0"]
    )
