"""training.calibrate: int8 ranges measured on training images (for the detector, and for the reader and
box refiner where the checkpoint has them), written into the checkpoint, used by everything that loads
it on the CPU, and carried along by export."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from models.checkpoint import read_checkpoint_meta
from models.host import cpu_info
from models.int8 import INT8_META, has_int8, is_quantized, load_int8
from models.optimize import load_prepared_reader, load_prepared_refiner
from models.reader import DigitReader, save_reader
from models.refiner import BoxRefiner, RefineParams, save_refiner
from models.reread import CropSpec, RereadParams
from tests.helpers import randomise_batchnorm
from training import calibrate, evaluate, export
from training.data import DataError
from training.runner import load_prepared

CPU = torch.device("cpu")


@pytest.fixture
def checkpoint(trained_run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ck"
    shutil.copytree(trained_run / "best", folder)
    return folder


def test_draw_images_is_seeded_and_takes_at_most_what_there_is(synth_dir: Path, tmp_path: Path) -> None:
    train = synth_dir / "train"
    first, again = calibrate.draw_images(train, 5, 0), calibrate.draw_images(train, 5, 0)
    assert first == again and len(set(first)) == 5 and all(p.parent == train for p in first)
    assert calibrate.draw_images(train, 5, 1) != first
    total = len(list(train.iterdir()))
    assert len(calibrate.draw_images(train, total + 10, 0)) == total
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        calibrate.draw_images(tmp_path / "empty", 5, 0)
    with pytest.raises(DataError, match="does not exist"):
        calibrate.draw_images(tmp_path / "missing", 5, 0)


def test_calibrate_writes_the_ranges_that_evaluate_and_the_runner_use(
    checkpoint: Path, synth_dir: Path, tmp_path: Path
) -> None:
    model, _, _ = load_prepared(checkpoint, "cpu")
    assert not is_quantized(model)
    meta = calibrate.main(
        ["--checkpoint", str(checkpoint), "--images", str(synth_dir / "train"), "--count", "6"]
    )
    assert has_int8(checkpoint) and load_int8(checkpoint)[1] == meta
    assert meta.calibration_images == 6 and "seed 0" in meta.calibration
    assert meta.detector_sha256 == read_checkpoint_meta(checkpoint).weights_sha256
    model, _, _ = load_prepared(checkpoint, "cpu")
    assert is_quantized(model)

    common = ["--checkpoint", str(checkpoint), "--data", str(synth_dir), "--split", "valid"]
    common += ["--device", "cpu", "--workers", "0"]
    evaluate.main([*common, "--out", str(tmp_path / "int8")])
    evaluate.main([*common, "--out", str(tmp_path / "float"), "--no-int8"])
    int8_info = json.loads((tmp_path / "int8" / "evaluation.json").read_text())
    assert int8_info["int8"]["calibration_images"] == 6
    assert int8_info["host"] == cpu_info().describe()  # int8 figures depend a little on the CPU
    assert json.loads((tmp_path / "float" / "evaluation.json").read_text())["int8"] is None
    for out in ("int8", "float"):
        assert (tmp_path / out / "pred.csv").is_file()


def test_export_carries_the_ranges_to_the_new_weights(
    checkpoint: Path, synth_dir: Path, tmp_path: Path
) -> None:
    calibrate.main(["--checkpoint", str(checkpoint), "--images", str(synth_dir / "train"), "--count", "3"])
    out = export.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "half")])
    exported = json.loads((out / INT8_META).read_text())
    assert exported["detector_sha256"] == read_checkpoint_meta(out).weights_sha256
    assert exported["detector_sha256"] != read_checkpoint_meta(checkpoint).weights_sha256
    stats, source_stats = load_int8(out)[0], load_int8(checkpoint)[0]
    assert all(torch.equal(stats[k], source_stats[k]) for k in source_stats)
    assert is_quantized(load_prepared(out, "cpu")[0])


def test_calibrate_refuses_a_count_below_one(
    checkpoint: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = str(synth_dir / "train")
    with pytest.raises(SystemExit):
        calibrate.main(["--checkpoint", str(checkpoint), "--images", images, "--count", "0"])
    assert "--count must be at least 1" in capsys.readouterr().err
    assert not has_int8(checkpoint)


def _add_crop_nets(checkpoint: Path) -> None:
    """Give the checkpoint a small reader and box refiner (random weights, BatchNorm statistics set)."""
    reader, refiner = DigitReader(width=8), BoxRefiner(width=8, fit_head=True)
    randomise_batchnorm(reader)
    randomise_batchnorm(refiner)
    save_reader(checkpoint, reader, CropSpec(), RereadParams())
    save_refiner(checkpoint, refiner, RefineParams(size=32))


def test_calibrate_measures_the_reader_and_refiner_on_the_crops_they_are_served(
    checkpoint: Path, synth_dir: Path, tmp_path: Path
) -> None:
    _add_crop_nets(checkpoint)
    images = ["--images", str(synth_dir / "train"), "--count", "6"]
    meta = calibrate.main(["--checkpoint", str(checkpoint), *images, "--no-progress"])
    reader, refiner = load_prepared_reader(checkpoint, CPU), load_prepared_refiner(checkpoint, CPU)
    assert reader is not None and refiner is not None
    assert meta.crop_nets == {"refiner": refiner[1].sha256, "reader": reader[1].sha256}
    assert is_quantized(reader[0]) and is_quantized(refiner[0])
    modules = {k.split(".")[0] for k in load_int8(checkpoint)[0]}
    assert modules == {"backbone", "rpn_conv", "reader", "refiner"}

    common = ["--checkpoint", str(checkpoint), "--data", str(synth_dir), "--split", "valid"]
    common += ["--device", "cpu", "--workers", "0"]
    evaluate.main([*common, "--out", str(tmp_path / "int8")])
    evaluate.main([*common, "--out", str(tmp_path / "float"), "--no-int8"])
    parts = [
        json.loads((tmp_path / o / "evaluation.json").read_text())["int8_parts"] for o in ("int8", "float")
    ]
    assert parts == [["detector", "refiner", "reader"], []]


def test_export_carries_the_reader_and_refiner_ranges_unless_one_is_replaced(
    checkpoint: Path, synth_dir: Path, tmp_path: Path
) -> None:
    _add_crop_nets(checkpoint)
    images = ["--images", str(synth_dir / "train"), "--count", "3", "--no-progress"]
    calibrate.main(["--checkpoint", str(checkpoint), *images])
    half = export.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "half")])
    reader, refiner = load_prepared_reader(half, CPU), load_prepared_refiner(half, CPU)
    assert reader is not None and refiner is not None and reader[1].dtype == "float16"
    assert load_int8(half)[1].crop_nets == {"reader": reader[1].sha256, "refiner": refiner[1].sha256}
    assert is_quantized(reader[0]) and is_quantized(refiner[0])

    other = tmp_path / "other-reader"
    save_reader(other, DigitReader(width=8), CropSpec(), RereadParams())
    swapped = export.main(
        ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "swapped"), "--reader", str(other)]
    )
    stats, int8 = load_int8(swapped)
    assert set(int8.crop_nets) == {"refiner"} and not any(k.startswith("reader.") for k in stats)
    reader = load_prepared_reader(swapped, CPU)
    assert reader is not None and not is_quantized(reader[0])  # float32 until calibrated again


def test_calibrate_keeps_the_detector_ranges_when_no_box_is_found_for_the_crop_nets(
    checkpoint: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _add_crop_nets(checkpoint)
    monkeypatch.setattr(calibrate, "detect_with_zoom", lambda model, images, zoom: [[] for _ in images])
    images = ["--images", str(synth_dir / "train"), "--count", "3", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="training.calibrate"):
        meta = calibrate.main(["--checkpoint", str(checkpoint), *images])
    assert meta.crop_nets == {} and "found no box on the 3 images" in caplog.text
    assert {k.split(".")[0] for k in load_int8(checkpoint)[0]} == {"backbone", "rpn_conv"}
    reader = load_prepared_reader(checkpoint, CPU)
    assert reader is not None and not is_quantized(reader[0])
    assert is_quantized(load_prepared(checkpoint, "cpu")[0])  # the detector in int8 all the same
