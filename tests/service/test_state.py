"""service.state: the operator's settings reach the predictor, and the startup line says what serves."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from service.config import SHIPPED_CHECKPOINT, Settings
from service.predictor import Predictor
from service.state import describe_serving, load_predictor

# a value for every setting that steers the predictor, each unlike the others and unlike its default
STEERING = {
    "score_threshold": 0.41,
    "iou_threshold": 0.42,
    "center_distance_ratio": 0.43,
    "height_ratio": 2.5,
    "read_columns": False,
    "zoom_below_px": 44.0,
    "search_tiles": 2,
    "side_look": 0.45,
    "search_located": True,
    "search_below_p": 0.46,
    "search_tiles_max": 3,
    "search_near": 0.47,
    "grain_threshold": 4.8,
    "sharpen_gate": 0.49,
    "levels_gate": 50.0,
    "balance_gate": 5.0,
    "widen_gate": 0.51,
    "squat_gate": 1.52,
    "use_reader": False,
    "use_refiner": False,
    "use_rescorer": False,
    "use_int8": False,
}


def test_every_predictor_option_is_a_setting_passed_on_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    options = [
        name for name, p in inspect.signature(Predictor.load).parameters.items() if p.kind is p.KEYWORD_ONLY
    ]
    assert sorted(options) == sorted(STEERING)  # a new option needs its setting (and a value here)
    received: dict[str, Any] = {}

    def fake_load(path: Path, device: torch.device, **kwargs: Any) -> str:
        received.update(kwargs, path=path, device=device)
        return "predictor"

    monkeypatch.setattr(Predictor, "load", fake_load)
    settings = Settings(**STEERING)  # type: ignore[arg-type]
    assert load_predictor(Path("ck"), torch.device("cpu"), settings) == "predictor"
    assert received == {**STEERING, "path": Path("ck"), "device": torch.device("cpu")}


def test_the_startup_line_names_the_weights_the_int8_parts_and_the_verifiers_split() -> None:
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    line = describe_serving(predictor, SHIPPED_CHECKPOINT, torch.device("cpu"))
    assert line.startswith(f"serving {SHIPPED_CHECKPOINT} ({predictor.meta.detector.arch}, sha256 ")
    assert predictor.meta.weights_sha256[:12] in line and " on cpu" in line
    assert f"in int8: {', '.join(predictor.int8_parts)}" in line and predictor.int8_parts
    assert predictor.verifier is not None
    assert line.endswith(f"p_correct from the verifier fitted on {predictor.verifier[1].fitted_on['split']}")
    plain = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"), use_int8=False, use_reader=False)
    plain_line = describe_serving(plain, SHIPPED_CHECKPOINT, torch.device("cpu"))
    assert (
        "int8" not in plain_line and "p_correct" not in plain_line
    )  # the verifier holds for the whole pipeline
