"""End to end on CPU: train a few steps on synthetic data, evaluate, reload, resume."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from tests.conftest import real_data
from tests.helpers import StopAfter, sigterm_once_workers_run
from training import evaluate, train
from training.data import DigitDataset, collate, load_coco_split
from training.engine import predict, train_one_epoch, validation_loss
from training.interrupt import RunStoppedError
from training.transforms import TrainTransforms

pytestmark = pytest.mark.slow


def test_run_folder_has_everything(trained_run: Path) -> None:
    for name in (
        "config.json",
        "metrics.jsonl",
        "loss_curves.png",
        "best/checkpoint.json",
        "last/weights.safetensors",
        "state/state.json",
        "eval/pred.json",
        "eval/pred.csv",
        "eval/metrics.json",
        "eval/confusion_matrix.png",
        "eval/confidence.png",
        "eval/alternatives.png",
        "eval/confirm.png",
        "eval/sweep.json",
    ):
        assert (trained_run / name).is_file(), name
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["val_loss"] > 0 and 0 <= r["val_map"] <= 1 and r["images_per_s"] > 0 for r in rows)
    _, meta = load_checkpoint(trained_run / "best")
    assert meta.training["max_steps_per_epoch"] == 3 and meta.data_fingerprint
    assert set(meta.metrics["valid"]) >= {"map", "map50", "accuracy"}


def test_evaluate_cli_on_labelled_split(trained_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    metrics = evaluate.main(
        [
            "--checkpoint",
            str(trained_run / "best"),
            "--data",
            str(synth_dir),
            "--split",
            "valid",
            "--out",
            str(tmp_path),
            "--workers",
            "0",
        ]
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert json.loads((tmp_path / "evaluation.json").read_text())["zoom"]["below_px"] == 0.0
    assert saved == metrics and all(0.0 <= saved[k] <= 1.0 for k in ("map", "map50", "accuracy"))
    assert sum(saved["digits"].values()) == saved["boxes"]
    for name in ("map", "map50", "accuracy"):  # the intervals surround the split's own figures
        span = saved["bootstrap"][name]
        assert (
            span["estimate"] == pytest.approx(saved[name]) and span["low"] <= span["estimate"] <= span["high"]
        )
    bins = saved["confidence"]["bins"]
    assert sum(b["images"] for b in bins) == 8 and sum(b["right"] for b in bins) == round(
        saved["accuracy"] * 8
    )
    assert saved["confidence"]["coverage"][-1]["accuracy"] == pytest.approx(saved["accuracy"])
    assert (tmp_path / "confidence.png").is_file() and (tmp_path / "alternatives.png").is_file()
    shares = [row["share"] for row in saved["alternatives"]]  # k = 0 is the accuracy; more never fewer
    assert shares[0] == pytest.approx(saved["accuracy"]) and shares == sorted(shares)
    confirm = saved["confirm"]  # the number read only first: the label passes as often as it is read
    assert confirm["pairs"]["label"] == 8 and (tmp_path / "confirm.png").is_file()
    assert confirm["rows"][0]["min_score"] is None
    assert confirm["rows"][0]["label"] == pytest.approx(saved["accuracy"])
    passed = [row["label"] for row in confirm["rows"]]  # from a lower min_score, never fewer
    assert passed == sorted(passed)
    street = confirm["street"]  # the number read alone names the label as often as it is read
    assert all(row["right"] + row["wrong"] + row["none"] == 8 for row in street)
    assert street[0]["right"] == round(saved["accuracy"] * 8)
    with (tmp_path / "pred.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and set(rows[0]) == {"image_id", "pred_label"}
    assert len(json.loads((tmp_path / "sweep.json").read_text())) == 9
    with (tmp_path / "errors.csv").open() as handle:
        errors = list(csv.DictReader(handle))
    assert len(errors) == round((1 - saved["accuracy"]) * 8)
    assert all(e["truth"] != e["pred"] for e in errors)


def test_evaluate_cli_on_test_split_writes_predictions_only(
    trained_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    evaluate.main(
        [
            "--checkpoint",
            str(trained_run / "best"),
            "--data",
            str(synth_dir),
            "--split",
            "test",
            "--out",
            str(tmp_path),
            "--workers",
            "0",
            "--score-threshold",
            "0.0",
            "--zoom-below-px",
            "1000",
        ]
    )
    assert json.loads((tmp_path / "evaluation.json").read_text())["zoom"]["below_px"] == 1000.0
    assert isinstance(json.loads((tmp_path / "pred.json").read_text()), list)
    with (tmp_path / "pred.csv").open() as handle:
        ids = [int(r["image_id"]) for r in csv.DictReader(handle)]
    assert ids == sorted(int(p.stem) for p in (synth_dir / "test").iterdir())
    assert not (tmp_path / "metrics.json").exists()


def test_trained_model_reloads_identically(synth_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = DETECTOR_PRESETS["fast"]
    model = build_detector(config)
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    loader = torch.utils.data.DataLoader(
        DigitDataset(records, TrainTransforms()), batch_size=4, collate_fn=collate
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    stats = train_one_epoch(
        model, optimizer, loader, torch.device("cpu"), epoch=1, max_steps=3, show_progress=False
    )
    assert stats["loss"] > 0
    reloaded, _ = load_checkpoint(save_checkpoint(tmp_path, model, config))
    eval_loader = torch.utils.data.DataLoader(DigitDataset(records[:4]), batch_size=2, collate_fn=collate)
    model.roi_heads.score_thresh = reloaded.roi_heads.score_thresh = 0.0
    a = predict(model, eval_loader, torch.device("cpu"), show_progress=False)
    b = predict(reloaded, eval_loader, torch.device("cpu"), show_progress=False)
    assert a == b and any(a.values())


def test_validation_loss_leaves_batchnorm_statistics_alone(synth_dir: Path) -> None:
    model = build_detector(DETECTOR_PRESETS["fast"])
    records, _ = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")
    loader = torch.utils.data.DataLoader(DigitDataset(records), batch_size=4, collate_fn=collate)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert validation_loss(model, loader, torch.device("cpu"), show_progress=False) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_same_seed_same_weights(synth_dir: Path, tmp_path: Path) -> None:
    def run(name: str) -> str:
        folder = train.main(
            [
                "--config",
                "fast",
                "--data",
                str(synth_dir),
                "--epochs",
                "1",
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--workers",
                "0",
                "--out",
                str(tmp_path),
                "--name",
                name,
                "--no-progress",
                "--max-valid-images",
                "4",
            ]
        )
        return json.loads((folder / "last" / "checkpoint.json").read_text())["weights"]["sha256"]

    assert run("a") == run("b")


@pytest.mark.parametrize(
    ("stop_at_step", "workers"),
    [(2, 0), (3, 0), (2, 2)],
    ids=["mid-epoch", "at-the-epoch-end", "mid-epoch-with-loader-workers"],
)
def test_a_stopped_run_resumes_to_the_weights_of_a_run_never_stopped(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at_step: int, workers: int
) -> None:
    """Loader workers included: each photo's augmentation is keyed by the epoch and the photo
    (`training.sampling.KeyedDraws`), not drawn from the generator of the worker that prepares it."""
    args = ["--config", "fast", "--data", str(synth_dir), "--epochs", "2", "--max-steps", "3"]
    args += ["--batch-size", "4", "--workers", str(workers), "--out", str(tmp_path), "--no-progress"]
    args += ["--max-valid-images", "4"]

    def weights(run: Path) -> str:
        return str(json.loads((run / "last" / "checkpoint.json").read_text())["weights"]["sha256"])

    whole = train.main([*args, "--name", "whole"])
    monkeypatch.setattr(train, "StopRequest", lambda enabled: StopAfter(stop_at_step))
    with pytest.raises(RunStoppedError) as stop:
        train.main([*args, "--name", "stopped"])
    stopped = stop.value.run_dir
    assert stop.value.exit_code == 143 and stopped == tmp_path / "stopped"
    saved = json.loads((stopped / "state" / "state.json").read_text())["progress"]
    if stop_at_step == 2:  # in epoch 1 of 3 steps: no epoch finished, the step count saved
        assert saved["epoch"] == 0 and saved["partial"]["epoch"] == 1 and saved["partial"]["steps"] == 2
        assert not (stopped / "last").exists()
    else:  # at its last step: epoch 1 finished and saved as usual
        assert saved["epoch"] == 1 and "partial" not in saved and not (stopped / "eval").exists()
    monkeypatch.undo()
    train.main(["--resume", str(stopped), "--no-progress"])
    assert weights(stopped) == weights(whole)
    rows = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and (stopped / "eval" / "pred.csv").exists()
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in expected])


def test_resume_continues_after_last_epoch(trained_run: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    # A run that started from weights since removed resumes from its own: the start is not read again.
    config = json.loads((copy / "config.json").read_text())
    config.update(init_from=str(tmp_path / "gone"), init_sha256="0" * 64)
    (copy / "config.json").write_text(json.dumps(config))
    train.main(["--resume", str(copy), "--epochs", "3", "--no-progress"])
    rows = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[2]["lr"] > rows[1]["lr"] > 0  # still inside the warm-up: the step count carried over


def test_sigterm_to_the_whole_group_stops_a_run_with_workers_and_saves_it(
    synth_dir: Path, tmp_path: Path
) -> None:
    """As a scheduler ending a job does: every process of the group, DataLoader workers included, gets
    SIGTERM once training has begun; the run saves where it stopped and exits with 143."""
    cmd = [sys.executable, "-m", "training.train", "--config", "fast", "--data", str(synth_dir)]
    cmd += ["--epochs", "3", "--batch-size", "2", "--workers", "2", "--device", "cpu", "--out", str(tmp_path)]
    cmd += ["--name", "stopped", "--no-progress", "--max-valid-images", "4"]
    code, log = sigterm_once_workers_run(cmd, settle=1.0)  # and the workers have started
    assert code == 143, log[-3000:]
    saved = json.loads((tmp_path / "stopped" / "state" / "state.json").read_text())["progress"]
    assert saved["epoch"] == 0 and saved["partial"]["steps"] >= 1, log[-2000:]
    assert "stopped in epoch 1 after step" in log and "Traceback" not in log


def test_torchrun_two_processes_on_cpu(synth_dir: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",  # a free rendezvous port, not a fixed one another process may hold
        "-m",
        "training.train",
        "--config",
        "fast",
        "--data",
        str(synth_dir),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--name",
        "ddp",
        "--no-progress",
        "--max-valid-images",
        "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    # Each rank's own traceback (a crash on one rank shows on the other only as a closed connection).
    ranks = ["\n".join(line for line in result.stderr.splitlines() if f"[rank{r}]" in line) for r in (0, 1)]
    assert result.returncode == 0, (
        f"{ranks[0][-2500:]}\n---\n{ranks[1][-2500:]}\n---\n{result.stderr[-2000:]}"
    )
    assert (tmp_path / "ddp" / "best" / "checkpoint.json").is_file()
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.realdata
def test_orand_trains_and_evaluates_with_one_command(tmp_path: Path) -> None:
    root = real_data("orand-car-a")
    config = Path(__file__).resolve().parents[2] / "configs" / "orand.yaml"
    run = train.main(
        [
            "--config",
            str(config),
            "--data",
            str(root),
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--max-valid-images",
            "8",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 8 and metrics["boxes"] > 8


def test_gradient_scaler_branch_trains(synth_dir: Path) -> None:
    """The AMP path's GradScaler steps (scale, unscale, clip, step, update), exercised on CPU."""
    torch.manual_seed(0)
    model = build_detector(DETECTOR_PRESETS["fast"])
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    loader = torch.utils.data.DataLoader(DigitDataset(records), batch_size=4, collate_fn=collate)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = model.roi_heads.box_predictor.cls_score.weight.detach().clone()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    stats = train_one_epoch(
        model,
        optimizer,
        loader,
        torch.device("cpu"),
        epoch=1,
        scaler=scaler,
        grad_clip=1.0,
        max_steps=2,
        show_progress=False,
    )
    assert stats["loss"] > 0 and scaler.get_scale() > 0
    assert not torch.equal(before, model.roi_heads.box_predictor.cls_score.weight)
