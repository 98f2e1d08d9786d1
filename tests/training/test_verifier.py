"""Tests for training.verifier: fitting, cross-validation and the tool through the shipped pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.verifier import VERIFIER_FILE, load_verifier
from service.config import SHIPPED_CHECKPOINT
from service.predictor import Predictor
from training import evaluate
from training import verifier as tool
from training.metrics import auc


def sample(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features of which the fourth (left_out) makes a reading wrong and the others are noise."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 5))
    right = features[:, 3] + 0.5 * rng.normal(size=n) < 0.5
    return features, right


def test_fit_learns_which_feature_tells_and_ranks_readings_by_it() -> None:
    features, right = sample()
    verifier = tool.fit_verifier(features, right)
    assert np.argmax(np.abs(verifier.weights)) == 3 and verifier.weights[3] < 0
    assert auc(verifier.p_correct(features), right) > 0.85
    held_out, truth = sample(seed=1)
    assert auc(verifier.p_correct(held_out), truth) > 0.85


def test_fit_refuses_readings_of_one_outcome() -> None:
    features, _ = sample(20)
    with pytest.raises(ValueError, match="right and wrong"):
        tool.fit_verifier(features, np.ones(20, dtype=bool))


def test_cross_validated_estimates_do_not_see_their_own_label() -> None:
    features, right = sample(200)
    read = np.ones(200, dtype=bool)
    read[:5] = False  # no number read: estimated 0, never fitted on
    first = tool.cross_validate(features, read, right, folds=5, seed=0, l2=1e-2)
    flipped = right.copy()
    flipped[10] = not flipped[10]
    second = tool.cross_validate(features, read, flipped, folds=5, seed=0, l2=1e-2)
    assert (first[:5] == 0).all() and first[10] == second[10]
    assert not np.allclose(first, second)  # other folds learnt from the flipped label
    with pytest.raises(ValueError, match="2 folds"):
        tool.cross_validate(features, read, right, folds=1, seed=0, l2=1e-2)


def test_auc_counts_ties_half() -> None:
    right = np.array([True, False, True, False])
    assert auc(np.array([0.9, 0.1, 0.8, 0.2]), right) == 1.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), right) == 0.5
    assert auc(np.array([0.9, 0.9, 0.1, 0.2]), right) == pytest.approx(1.5 / 4)  # a tie, a win, two losses
    assert auc(np.array([0.3, 0.4]), np.array([True, True])) == 0.5


def test_the_tool_fits_through_the_pipeline_the_service_runs(synth_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(SHIPPED_CHECKPOINT, checkpoint)
    (checkpoint / VERIFIER_FILE).unlink()
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--data", str(synth_dir), "--split", "train"]
    summary = tool.main([*argv, "--out", str(out), "--workers", "0", "--folds", "4", "--save"])
    cv = json.loads((out / "verifier_cv.json").read_text())
    assert cv == summary and cv["folds"] == 4
    assert sum(b["images"] for b in cv["p_correct_cv"]["bins"]) == 40
    assert 0.0 <= cv["p_correct_cv"]["auc"] <= 1.0 and (out / "verifier_cv.png").is_file()
    fitted = load_verifier(out)
    assert fitted is not None and fitted[1].fitted_on["images"] == 40
    assert (checkpoint / VERIFIER_FILE).read_text() == (out / VERIFIER_FILE).read_text()
    predictor = Predictor.load(checkpoint, torch.device("cpu"))
    assert predictor.verifier is not None  # the identity the tool recorded is the service's
    assert fitted[1].pipeline == predictor.identity
    common = [*argv[:4], "--workers", "0"]
    same = evaluate.main([*common, "--split", "train", "--out", str(tmp_path / "eval-train")])
    assert same["p_correct"]["in_sample"] and (tmp_path / "eval-train" / "p_correct.png").is_file()
    assert sum(b["right"] for b in same["p_correct"]["bins"]) == round(same["accuracy"] * 40)
    other = evaluate.main([*common, "--split", "valid", "--out", str(tmp_path / "eval-valid")])
    assert not other["p_correct"]["in_sample"] and sum(b["images"] for b in other["p_correct"]["bins"]) == 8
