"""Training the rescorer: its rows, its fit on a learnable target, and the command line through export
and evaluation."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from models.assembly import Detection
from models.reader import DigitReader, save_reader
from models.refiner import BoxRefiner, RefineParams, save_refiner
from models.reread import CropSpec, RereadParams
from models.rescorer import FEATURE_NAMES, detection_features, has_rescorer, load_rescorer
from training import evaluate, export, rescorer
from training.data import DigitBox, ImageRecord


def test_rows_are_each_detections_features_and_quality() -> None:
    record = ImageRecord(7, Path("7.png"), 40, 30, (DigitBox((10.0, 5.0, 20.0, 25.0), 3),))
    found = {
        7: [Detection((10.0, 5.0, 20.0, 25.0), 3, 0.9, 0.8), Detection((10.0, 5.0, 20.0, 25.0), 8, 0.3, 0.8)]
    }
    empty = ImageRecord(8, Path("8.png"), 40, 30, ())
    probs = {7: torch.softmax(torch.randn(2, 10), 1)}  # image 8 has no detections, so no readings
    features, targets = rescorer.training_rows([record, empty], found, probs)
    expected = detection_features(found[7], 40, 30, probs[7])
    assert torch.equal(features, expected) and targets.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="no detections"):
        rescorer.training_rows([empty], found, probs)


def test_fitting_learns_a_target_the_features_explain_and_repeats_with_its_seed() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2000, len(FEATURE_NAMES), generator=generator) * 2 + 1
    target = torch.sigmoid(1.5 * x[:, 0] - x[:, 5])
    model, losses = rescorer.fit_rescorer(
        x, target, hidden=8, members=2, epochs=10, lr=0.02, batch_size=64, seed=0
    )
    assert not model.training and losses[-1] < losses[0]
    predicted = model(x).detach()
    assert torch.corrcoef(torch.stack([predicted, target]))[0, 1] > 0.95
    assert (predicted - target).abs().mean() < 0.5 * (target - target.mean()).abs().mean()
    again, _ = rescorer.fit_rescorer(
        x, target, hidden=8, members=2, epochs=10, lr=0.02, batch_size=64, seed=0
    )
    other, _ = rescorer.fit_rescorer(
        x, target, hidden=8, members=2, epochs=10, lr=0.02, batch_size=64, seed=1
    )
    assert torch.equal(again(x), model(x)) and not torch.equal(other(x), model(x))


def test_the_command_trains_one_that_export_ships_and_evaluation_ranks_by(
    trained_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    plain = export.main(["--checkpoint", str(trained_run / "last"), "--out", str(tmp_path / "plain")])
    args = ["--data", str(synth_dir), "--annotations", str(synth_dir / "train.json"), "--device", "cpu"]
    args += ["--workers", "0", "--epochs", "2", "--members", "2", "--hidden", "4"]
    with pytest.raises(SystemExit, match="fit head"):
        rescorer.main(["--checkpoint", str(plain), *args, "--out", str(tmp_path / "none")])
    shipped = tmp_path / "ck"
    shutil.copytree(plain, shipped)
    torch.manual_seed(0)
    save_refiner(shipped, BoxRefiner(width=4, fit_head=True).eval(), RefineParams(size=24, step=0.5))
    with pytest.raises(SystemExit, match="no reader"):
        rescorer.main(["--checkpoint", str(shipped), *args, "--out", str(tmp_path / "none")])
    save_reader(shipped, DigitReader(width=4).eval(), CropSpec(size=24), RereadParams(0.5, 0.5, 0.0))
    meta = rescorer.main(["--checkpoint", str(shipped), *args, "--out", str(tmp_path / "rescorer")])
    assert (meta.members, meta.hidden) == (2, 4) and len(meta.metrics["train_loss"]) == 2
    assert meta.metrics["sources"][str(synth_dir / "train.json")]["images"] == 40

    for partial in ("refiner", "reader"):  # a checkpoint with one of its two inputs only
        folder = tmp_path / f"only-{partial}"
        shutil.copytree(plain, folder)
        shutil.copy(shipped / f"{partial}.json", folder)
        shutil.copy(shipped / f"{partial}.safetensors", folder)
        with pytest.raises(ValueError, match="reader and a box refiner"):
            export.main(
                ["--checkpoint", str(folder), "--out", str(folder), "--rescorer", str(tmp_path / "rescorer")]
            )
    export.main(
        ["--checkpoint", str(shipped), "--out", str(shipped), "--rescorer", str(tmp_path / "rescorer")]
    )
    assert load_rescorer(shipped)[1].sha256 == meta.sha256
    assert has_rescorer(export.main(["--checkpoint", str(shipped), "--out", str(tmp_path / "copy")]))

    common = ["--checkpoint", str(shipped), "--data", str(synth_dir), "--split", "valid"]
    common += ["--device", "cpu", "--workers", "0", "--score-threshold", "0.0"]
    evaluate.main([*common, "--out", str(tmp_path / "with")])
    evaluate.main([*common, "--out", str(tmp_path / "without"), "--no-rescorer"])
    assert json.loads((tmp_path / "with" / "evaluation.json").read_text())["rescorer"]["members"] == 2
    assert json.loads((tmp_path / "without" / "evaluation.json").read_text())["rescorer"] is None
    ranked = json.loads((tmp_path / "with" / "pred.json").read_text())
    plain_rank = json.loads((tmp_path / "without" / "pred.json").read_text())
    assert len(ranked) == len(plain_rank) > 0
    assert [(p["image_id"], p["bbox"], p["category_id"]) for p in ranked] == [
        (p["image_id"], p["bbox"], p["category_id"]) for p in plain_rank
    ]
    assert any(p["score"] != q["score"] for p, q in zip(ranked, plain_rank, strict=True))
    csv = (tmp_path / "with" / "pred.csv").read_text()
    assert csv == (tmp_path / "without" / "pred.csv").read_text()  # the numbers read do not change
