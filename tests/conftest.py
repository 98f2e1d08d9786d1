"""Shared fixtures: a small synthetic HW2-layout data set and a tiny trained checkpoint, made once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from training import synth, train

# CI replays the same examples every run (stable verdicts); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 train + 8 valid + 4 unlabelled test images in the HW2 layout."""
    out = tmp_path_factory.mktemp("synth")
    synth.main(
        [
            "--out",
            str(out),
            "--count",
            "48",
            "--valid-fraction",
            "0.17",
            "--test-count",
            "4",
            "--workers",
            "1",
            "--seed",
            "3",
        ]
    )
    return out


@pytest.fixture(scope="session")
def trained_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder from a few CPU training steps of the fast config on the synthetic set."""
    out = tmp_path_factory.mktemp("runs")
    return train.main(
        [
            "--config",
            "fast",
            "--data",
            str(synth_dir),
            "--epochs",
            "2",
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--out",
            str(out),
            "--name",
            "tiny",
            "--no-progress",
        ]
    )


def real_data(name: str) -> Path:
    """Path of a real data set in ../shared/data, skipping the test when it is absent."""
    path = REAL_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is not present on this machine")
    return path
