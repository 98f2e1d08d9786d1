"""models.hw2: the Task 2 pred.csv written and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.hw2 import read_pred_csv, write_pred_csv


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
