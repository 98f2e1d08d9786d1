"""Picking images by how an evaluation read them: kinds, pairing with the json, the CLI."""

import csv
import json
from pathlib import Path

import pytest

from training import pick
from training.data import DataError
from training.pick import DEFAULT_KINDS, Misread, check_pairing, read_errors, selected_ids

MISREADS = [
    Misread(1, "1.png", 23, 2),  # missed digit
    Misread(2, "2.png", 23, 28),  # same length
    Misread(3, "3.png", 7, 17),  # extra digit: mostly a label that leaves out a digit
    Misread(4, "4.png", 5, -1),  # no digit
]


def _doc(n: int = 6) -> dict:
    return {
        "info": {"note": "kept as is"},
        "images": [{"id": i, "file_name": f"{i}.png", "width": 60, "height": 30} for i in range(1, n + 1)],
        "annotations": [
            {"id": 10 * i + k, "image_id": i, "category_id": 2, "bbox": [1 + 10 * k, 1, 8, 20]}
            for i in range(1, n + 1)
            for k in range(2)
        ],
        "categories": [{"id": d + 1, "name": str(d)} for d in range(10)],
    }


def _write_errors(path: Path, rows: list[Misread]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "file_name", "truth", "pred"])
        writer.writerows([m.image_id, m.file_name, m.truth, m.pred] for m in rows)
    return path


def test_default_kinds_leave_out_longer_readings() -> None:
    assert "extra digit" not in DEFAULT_KINDS
    assert selected_ids(MISREADS, DEFAULT_KINDS) == {1, 2, 4}
    assert selected_ids(MISREADS, ("extra digit",)) == {3}
    assert selected_ids(MISREADS, ("missed digit", "no digit")) == {1, 4}


def test_errors_csv_round_trip(tmp_path: Path) -> None:
    assert read_errors(_write_errors(tmp_path / "errors.csv", MISREADS)) == MISREADS


def test_another_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pred.csv"
    path.write_text("image_id,pred_label\n1,23\n")
    with pytest.raises(DataError, match=r"not an errors\.csv"):
        read_errors(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [(Misread(9, "9.png", 1, 2), "has no such image"), (Misread(2, "other.png", 1, 2), "names '2.png'")],
)
def test_errors_of_another_json_are_refused(row: Misread, message: str) -> None:
    with pytest.raises(DataError, match=message):
        check_pairing(_doc(), [row], "train.json")


def _run(tmp_path: Path, keep: str, out: str, *extra: str) -> tuple[dict, dict]:
    """pick.main on `_doc()` and MISREADS written under tmp_path: (report, the written json)."""
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(_doc()))
    errors = _write_errors(tmp_path / "errors.csv", MISREADS)
    argv = ["--annotations", str(ann), "--errors", str(errors), "--keep", keep, "--out", str(tmp_path / out)]
    report = pick.main([*argv, *extra])
    return report, json.loads((tmp_path / out).read_text())


def test_cli_misread_and_rest_split_the_images(tmp_path: Path) -> None:
    report, hard = _run(tmp_path, "misread", "hard.json")
    _, rest = _run(tmp_path, "rest", "rest.json")
    assert [im["id"] for im in hard["images"]] == [1, 2, 4]
    assert [im["id"] for im in rest["images"]] == [3, 5, 6]
    assert {a["image_id"] for a in hard["annotations"]} == {1, 2, 4}
    assert len(hard["annotations"]) + len(rest["annotations"]) == len(_doc()["annotations"])
    assert hard["categories"] == rest["categories"] == _doc()["categories"]
    assert hard["info"] == {"note": "kept as is"}
    assert report["kept"] == 3
    assert report["misread"] == {"missed digit": 1, "same length": 1, "extra digit": 1, "no digit": 1}
    saved = json.loads((tmp_path / "hard.report.json").read_text())
    assert saved["kinds"] == list(DEFAULT_KINDS)


def test_cli_kinds_pick_longer_readings_when_asked(tmp_path: Path) -> None:
    _, longer = _run(tmp_path, "misread", "longer.json", "--kinds", "extra digit")
    assert [im["id"] for im in longer["images"]] == [3]


@pytest.mark.parametrize("kinds", ["longer", ",", "missed digit,wrong"])
def test_cli_refuses_unknown_kinds(tmp_path: Path, kinds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        pick.parse_args(
            ["--annotations", "a", "--errors", "e", "--keep", "rest", "--kinds", kinds, "--out", "o"]
        )
    assert "--kinds: unknown" in capsys.readouterr().err
