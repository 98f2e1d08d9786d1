"""Backbone pretraining on digit crops: the classifier on the detector body and a tiny CPU run whose
checkpoint starts a detection run."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from training import pretrain
from training.config import load_config
from training.pretrain import CropClassifier
from training.train import build_model


def test_classifier_on_the_detector_body_gives_ten_logits() -> None:
    config = DETECTOR_PRESETS["fast"]
    body = build_detector(config).backbone.body
    model = CropClassifier(body, config.image_mean, config.image_std)
    assert model(torch.rand(4, 3, 48, 48)).shape == (4, 10)
    assert model.body is body and model.head.in_features == 512


@pytest.mark.slow
def test_pretraining_run_starts_a_detection_run(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pretrain"
    args = ["--config", "fast", "--data", str(synth_dir), "--out", str(out), "--epochs", "2"]
    args += ["--max-steps", "2", "--batch-size", "8", "--size", "32", "--workers", "0", "--no-progress"]
    best = pretrain.main(args)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(0 <= r["val_accuracy"] <= 1 for r in rows)
    assert (out / "pretraining.png").stat().st_size > 0
    model, meta = load_checkpoint(best)
    assert meta.metrics["crop_pretraining"]["val_accuracy"] == max(r["val_accuracy"] for r in rows)
    trained = model.backbone.body.state_dict()
    torch.manual_seed(0)
    fresh = build_detector(DETECTOR_PRESETS["fast"]).backbone.body.state_dict()
    assert any(not torch.equal(trained[k], fresh[k]) for k in trained if trained[k].is_floating_point())
    # A detection config with init_from starts from exactly these backbone weights.
    config = replace(load_config("fast"), init_from=str(best))
    started = build_model(config, torch.device("cpu")).backbone.body.state_dict()
    assert all(torch.equal(started[k], trained[k]) for k in trained)
