"""Training the reader, shipping it inside a checkpoint, and evaluation reading numbers with it."""

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch

from models.assembly import AssemblyParams, assemble_number
from models.checkpoint import read_checkpoint_meta
from models.optimize import load_prepared_reader
from models.reader import DigitReader, has_reader, load_reader
from training import evaluate, export, reader
from training.crops import CropParams, crop_params
from training.data import load_coco_split
from training.runner import load_prepared, predict_records, read_sites


@pytest.fixture(scope="module")
def reader_dir(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reader")
    args = ["--config", "fast", "--data", str(synth_dir), "--out", str(out), "--epochs", "2", "--width", "4"]
    args += ["--max-steps", "3", "--batch-size", "8", "--size", "24", "--workers", "0", "--no-progress"]
    reader.main([*args, "--detector-weight", "0.6", "--warmup-steps", "2"])
    return out


def test_reader_run_writes_a_trained_reader_with_its_settings(reader_dir: Path) -> None:
    rows = [json.loads(line) for line in (reader_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and (reader_dir / "pretraining.png").stat().st_size > 0
    model, meta = load_reader(reader_dir)
    assert (meta.width, meta.crop.size, meta.reread.detector_weight) == (4, 24, 0.6)
    assert meta.metrics["last_epoch"] == rows[-1]  # the last epoch, not the best one
    torch.manual_seed(0)
    fresh = DigitReader(width=4).state_dict()
    trained = model.state_dict()
    assert any(not torch.equal(fresh[k], trained[k]) for k in trained if trained[k].is_floating_point())


def test_the_same_flags_train_the_same_reader(synth_dir: Path, tmp_path: Path) -> None:
    args = ["--config", "fast", "--data", str(synth_dir), "--epochs", "1", "--max-steps", "2"]
    args += ["--batch-size", "8", "--size", "24", "--workers", "0", "--width", "4", "--no-progress"]
    torch.manual_seed(123)  # whatever state the process is in, the seed decides
    first = reader.main([*args, "--out", str(tmp_path / "a")])
    torch.manual_seed(456)
    again = reader.main([*args, "--out", str(tmp_path / "b")])
    other = reader.main([*args, "--out", str(tmp_path / "c"), "--seed", "1"])
    assert first.sha256 == again.sha256 != other.sha256


def test_degradation_flags_reach_the_crops_and_change_the_reader(synth_dir: Path, tmp_path: Path) -> None:
    flags = ["--low-res", "0.3", "--low-res-min", "0.5", "--rotate", "6", "--erase", "0.25"]
    args = ["--config", "fast", "--data", str(synth_dir), "--epochs", "1", "--max-steps", "2"]
    args += ["--batch-size", "8", "--size", "24", "--workers", "0", "--width", "4", "--no-progress"]
    parsed = reader.parse_args([*args, "--out", "x", *flags])
    assert crop_params(parsed) == CropParams(size=24, low_res=0.3, low_res_min=0.5, rotate=6.0, erase=0.25)
    assert crop_params(reader.parse_args([*args, "--out", "x"])) == CropParams(size=24)
    plain = reader.main([*args, "--out", str(tmp_path / "plain")])
    degraded = reader.main([*args, "--out", str(tmp_path / "degraded"), *flags])
    assert degraded.sha256 != plain.sha256  # same seed, same crops before the degradations
    assert degraded.metrics["args"]["rotate"] == "6.0" and plain.metrics["args"]["erase"] == "0.0"
    # The crops it reads in service are the plain ones: the degradations are not part of the reader.
    assert degraded.crop == plain.crop


def test_a_teacher_changes_what_the_reader_learns(synth_dir: Path, reader_dir: Path, tmp_path: Path) -> None:
    args = ["--config", "fast", "--data", str(synth_dir), "--epochs", "1", "--max-steps", "3"]
    args += ["--batch-size", "8", "--size", "24", "--workers", "0", "--width", "4", "--no-progress"]
    alone = reader.main([*args, "--out", str(tmp_path / "alone")])
    taught = reader.main(
        [*args, "--out", str(tmp_path / "taught"), "--teacher", str(reader_dir), "--kd-weight", "1.0"]
    )
    preloaded = reader.main([*args, "--out", str(tmp_path / "pre"), "--preload-images", "--dtype", "float16"])
    assert taught.sha256 != alone.sha256  # same seed, same crops: only the teacher differs
    assert taught.metrics["teacher_sha256"] == load_reader(reader_dir)[1].sha256
    assert "teacher_sha256" not in alone.metrics
    # Preloading changes nothing but the speed; float16 storage halves the weights.
    assert preloaded.dtype == "float16" and load_reader(tmp_path / "pre")[1].dtype == "float16"
    a, b = load_reader(tmp_path / "alone")[0].state_dict(), load_reader(tmp_path / "pre")[0].state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3) for k in a)


def test_a_teacher_must_read_the_same_crops(synth_dir: Path, reader_dir: Path, tmp_path: Path) -> None:
    args = ["--config", "fast", "--data", str(synth_dir), "--out", str(tmp_path / "r"), "--epochs", "1"]
    args += ["--max-steps", "1", "--batch-size", "8", "--size", "32", "--workers", "0", "--no-progress"]
    with pytest.raises(ValueError, match="must match"):
        reader.main([*args, "--teacher", str(reader_dir)])  # the teacher reads 24 px crops


def test_site_detections_add_crops_and_teach_a_no_digit_class(
    synth_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pred.json of the training split: a site on each labelled box, and one false box per image."""
    doc = json.loads((synth_dir / "train.json").read_text())
    rows = [
        {"image_id": a["image_id"], "bbox": a["bbox"], "category_id": a["category_id"], "score": 0.9}
        for a in doc["annotations"]
    ]
    rows += [
        {"image_id": i["id"], "bbox": [0, 0, 4, 4], "category_id": 3, "score": 0.7} for i in doc["images"]
    ]
    (tmp_path / "pred.json").write_text(json.dumps(rows))
    args = ["--config", "fast", "--data", str(synth_dir), "--out", str(tmp_path / "r"), "--epochs", "1"]
    args += ["--max-steps", "2", "--batch-size", "8", "--size", "24", "--workers", "0", "--width", "4"]
    with caplog.at_level("INFO"):
        meta = reader.main([*args, "--no-progress", "--site-detections", str(tmp_path / "pred.json")])
    labelled = len(doc["annotations"])
    assert (
        f"crops: {2 * labelled + len(doc['images'])} train ({labelled + len(doc['images'])} extra)"
        in caplog.text
    )
    model, loaded = load_reader(tmp_path / "r")
    assert meta.not_digit and loaded.not_digit and model(torch.rand(1, 3, 24, 24)).shape == (1, 11)


def test_export_ships_the_reader_and_evaluation_reads_with_it(
    reader_dir: Path, trained_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    shipped = export.main(
        [
            "--checkpoint",
            str(trained_run / "last"),
            "--out",
            str(tmp_path / "ck"),
            "--reader",
            str(reader_dir),
        ]
    )
    assert has_reader(shipped) and load_reader(shipped)[1].dtype == "float16"
    again = export.main(
        ["--checkpoint", str(shipped), "--out", str(tmp_path / "again"), "--dtype", "float32"]
    )
    assert has_reader(again)  # a reader already in the source comes along
    read_checkpoint_meta(shipped)  # the detector's own hash is unaffected

    # the 40 training photos: on the 8 valid ones a reader trained for 3 steps may change no number
    common = ["--checkpoint", str(shipped), "--data", str(synth_dir), "--split", "train"]
    # the photos as they are (no grain smoothing, no stretch), as the readings below are made from them
    common += ["--device", "cpu", "--workers", "0", "--score-threshold", "0.0", "--grain-threshold", "0"]
    common += ["--levels-gate", "0", "--balance-gate", "0"]
    evaluate.main([*common, "--out", str(tmp_path / "with")])
    evaluate.main([*common, "--out", str(tmp_path / "without"), "--no-reader"])
    info = json.loads((tmp_path / "with" / "evaluation.json").read_text())
    assert info["reader"]["reread"]["detector_weight"] == 0.6
    assert json.loads((tmp_path / "without" / "evaluation.json").read_text())["reader"] is None
    # Task 1 is the detector's either way; Task 2 is read from the reader's sites.
    assert (tmp_path / "with" / "pred.json").read_text() == (tmp_path / "without" / "pred.json").read_text()
    with (tmp_path / "with" / "pred.csv").open() as handle:
        written = {int(r["image_id"]): int(r["pred_label"]) for r in csv.DictReader(handle)}
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    model, meta, device = load_prepared(shipped, "cpu")
    found = predict_records(
        model, records, device, argparse.Namespace(batch_size=16, workers=0), "", meta.zoom
    )
    loaded = load_prepared_reader(shipped, device)
    assert loaded is not None and sum(map(len, found.values())) > 0
    sites = read_sites(loaded, records, found, batch_size=16)  # evaluate's batches: the same sums
    expected = {i: assemble_number(s, AssemblyParams(score_threshold=0.0)).value for i, s in sites.items()}
    assert written == expected
    plain = {i: assemble_number(d, AssemblyParams(score_threshold=0.0)).value for i, d in found.items()}
    assert plain != expected  # so the check above tells the two readings apart
