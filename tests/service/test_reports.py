"""What `digitserve predict` prints and writes of its readings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from models.assembly import Detection, assemble_number
from service import readers, reports


def test_drawing_names_never_repeat() -> None:
    paths = [Path("a/3.png"), Path("a/3.jpg"), Path("a/3_1.png"), Path("b/3.png"), Path("b/7.png")]
    assert reports.drawing_names(paths) == ["3_1.png", "3_2.png", "3_1_.png", "3_4.png", "7.png"]


def test_the_summary_counts_numbers_blanks_and_errors() -> None:
    digit = Detection((0.0, 0.0, 4.0, 8.0), 5, 0.9)
    read = readers.FileResult(Path("a.png"), [digit], [digit], assemble_number([digit]), 10.0)
    blank = readers.FileResult(Path("b.png"), [], [], assemble_number([]), 10.0)
    failed = readers.FileResult(Path("c.png"), [], [], None, 1.0, error="truncated")
    line = reports.summarize([read, blank, blank, failed], 2.0)
    assert line == "digitserve: 4 files: a number in 1, no digit in 2, an error in 1; 2.0 s, 2.0 files/s"
    assert (
        reports.summarize([], 0.0)
        == "digitserve: 0 files: a number in 0, no digit in 0, an error in 0; 0.0 s"
    )
    old, new = replace(read, version="0123456789ab"), replace(blank, version="ba9876543210")
    assert reports.summarize([old, old, failed], 1.0).endswith("files/s; version 0123456789ab")
    # a server replaced during the run: both named, in the order they first answered
    assert reports.summarize([old, new, old], 1.0).endswith("files/s; versions 0123456789ab, ba9876543210")
