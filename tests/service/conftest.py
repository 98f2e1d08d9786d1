"""Service fixtures: a tiny real checkpoint (random fast detector) and a started TestClient."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.checkpoint import save_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from models.int8 import calibrate_detector, save_int8
from models.optimize import load_prepared_detector
from models.reader import DigitReader, save_reader
from models.refiner import BoxRefiner, RefineParams, save_refiner
from models.reread import CropSpec, RereadParams
from models.rescorer import Rescorer, save_rescorer
from models.verifier import NumberVerifier, VerifierMeta, save_verifier
from service.app import create_app
from service.config import Settings
from service.imaging import to_model_input
from service.predictor import Predictor
from training.synth import render_sample


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = DETECTOR_PRESETS["fast"]
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny", build_detector(config).eval(), config, metrics={"map": 0.0}
    )


@pytest.fixture(scope="session")
def tiny_checkpoint_with_reader(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint plus a random reader that weighs as much as the detector (0.5) and looks
    at every site (min_presence 0)."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-reader"
    shutil.copytree(tiny_checkpoint, folder)
    torch.manual_seed(1)
    save_reader(folder, DigitReader(width=4).eval(), CropSpec(size=24), RereadParams(0.5, 0.5, 0.0))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint_with_refiner(
    tiny_checkpoint_with_reader: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny checkpoint with its reader plus a random box refiner, with a fit head, that moves boxes
    half way."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-refiner"
    shutil.copytree(tiny_checkpoint_with_reader, folder)
    torch.manual_seed(2)
    save_refiner(folder, BoxRefiner(width=4, fit_head=True).eval(), RefineParams(size=24, step=0.5))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint_with_rescorer(
    tiny_checkpoint_with_refiner: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny checkpoint with its reader and box refiner plus a random rescorer (2 members)."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-rescorer"
    shutil.copytree(tiny_checkpoint_with_refiner, folder)
    torch.manual_seed(3)
    save_rescorer(folder, Rescorer(hidden=4, members=2).eval())
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint_with_verifier(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint plus a verifier fitted (by hand) on it at score threshold 0: served at that
    threshold, p_correct comes from it."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-verifier"
    shutil.copytree(tiny_checkpoint, folder)
    served = Predictor.load(folder, torch.device("cpu"), score_threshold=0.0).identity
    verifier = NumberVerifier((0.0,) * 5, (1.0,) * 5, (0.5, 1.0, 0.2, -2.0, -1.0), 0.3)
    save_verifier(folder, verifier, VerifierMeta(served, {"split": "valid", "images": 3}, {"auc": 0.7}))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint_with_int8(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint plus int8 ranges measured on 3 synthetic images (models/int8.py)."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-int8"
    shutil.copytree(tiny_checkpoint, folder)
    model, meta, _ = load_prepared_detector(folder, torch.device("cpu"), use_int8=False)
    images = [to_model_input(np.array(render_sample(seed).image)) for seed in range(3)]
    stats = calibrate_detector(model, images)
    save_int8(folder, stats, detector_sha256=meta.weights_sha256, calibration_images=3)
    return folder


def png(size: tuple[int, int] = (126, 56), colour: str = "white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(size: tuple[int, int] = (126, 56), seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    array = (torch.rand(size[1], size[0], 3) * 255).byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


StartClient = Callable[..., TestClient]


@pytest.fixture
def start_client(tiny_checkpoint: Path) -> Iterator[StartClient]:
    """start_client(**settings) -> a TestClient whose startup (model load) has finished."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        settings = Settings(**{"checkpoint": tiny_checkpoint, "device": "cpu", **overrides})
        app = create_app(settings)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        assert app.state.service.loaded.wait(60), "model did not finish loading"
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(start_client: StartClient) -> TestClient:
    return start_client()
