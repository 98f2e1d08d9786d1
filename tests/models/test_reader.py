"""The reader's storage: a folder that round-trips, refuses a changed file and copies as float16."""

import json
from pathlib import Path

import pytest
import torch

from models.reader import (
    READER_META,
    READER_WEIGHTS,
    DigitReader,
    ReaderError,
    copy_reader,
    has_reader,
    load_reader,
    save_reader,
)
from models.reread import CropSpec, RereadParams


def _saved(folder: Path) -> DigitReader:
    torch.manual_seed(0)
    reader = DigitReader(width=4).eval()
    save_reader(folder, reader, CropSpec(size=24), RereadParams(detector_weight=0.5), metrics={"acc": 0.9})
    return reader


def test_reader_round_trips_with_its_settings(tmp_path: Path) -> None:
    original = _saved(tmp_path)
    assert has_reader(tmp_path) and not has_reader(tmp_path / "elsewhere")
    loaded, meta = load_reader(tmp_path)
    assert (meta.width, meta.crop, meta.reread.detector_weight) == (4, CropSpec(size=24), 0.5)
    assert meta.metrics == {"acc": 0.9} and not loaded.training
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(original(x), loaded(x))


def test_a_replaced_weights_file_is_refused(tmp_path: Path) -> None:
    _saved(tmp_path)
    other = tmp_path / "other"
    torch.manual_seed(1)
    save_reader(other, DigitReader(width=4), CropSpec(), RereadParams())
    (tmp_path / READER_WEIGHTS).write_bytes((other / READER_WEIGHTS).read_bytes())
    with pytest.raises(ReaderError, match="does not match"):
        load_reader(tmp_path)


def test_a_malformed_reader_json_is_a_reader_error(tmp_path: Path) -> None:
    _saved(tmp_path)
    (tmp_path / READER_META).write_text(json.dumps({"width": 4}))
    with pytest.raises(ReaderError, match="cannot load"):
        load_reader(tmp_path)


def test_copy_as_float16_halves_the_file_and_keeps_the_answers(tmp_path: Path) -> None:
    original = _saved(tmp_path / "src")
    meta = copy_reader(tmp_path / "src", tmp_path / "dst", dtype="float16")
    assert meta.dtype == "float16" and meta.reread.detector_weight == 0.5
    size = (tmp_path / "dst" / READER_WEIGHTS).stat().st_size
    assert size < 0.6 * (tmp_path / "src" / READER_WEIGHTS).stat().st_size
    copied, _ = load_reader(tmp_path / "dst")
    x = torch.rand(3, 3, 24, 24)
    assert torch.allclose(original(x).softmax(1), copied(x).softmax(1), atol=1e-2)


def test_a_no_digit_reader_round_trips_and_an_older_json_reads_as_ten_digits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reader = DigitReader(width=4, not_digit=True).eval()
    meta = save_reader(tmp_path, reader, CropSpec(size=24), RereadParams(presence_weight=0.5))
    loaded, read = load_reader(tmp_path)
    assert meta.not_digit and read.not_digit and read.reread.presence_weight == 0.5
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(loaded(x), reader(x)) and loaded(x).shape == (2, 11)
    older = _saved(tmp_path / "older")  # written before the field existed: drop it from the json
    doc = json.loads((tmp_path / "older" / READER_META).read_text())
    del doc["not_digit"], doc["reread"]["presence_weight"]
    (tmp_path / "older" / READER_META).write_text(json.dumps(doc))
    model, old_meta = load_reader(tmp_path / "older")
    assert not old_meta.not_digit and old_meta.reread.presence_weight == 1.0
    assert torch.equal(model(x), older(x)) and model(x).shape == (2, 10)
