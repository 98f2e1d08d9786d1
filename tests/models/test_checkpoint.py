import json
from pathlib import Path

import pytest
import torch

from models.assembly import AssemblyParams
from models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    set_checkpoint_zoom,
    update_checkpoint_metrics,
)
from models.detector import DETECTOR_PRESETS, build_detector
from models.zoom import ZoomParams

CONFIG = DETECTOR_PRESETS["fast"]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_detector(CONFIG).eval()
    folder = save_checkpoint(
        tmp_path / "ckpt",
        model,
        CONFIG,
        assembly=AssemblyParams(score_threshold=0.7),
        training={"epochs": 3},
        data_fingerprint="abc",
        metrics={"map": 0.5},
    )
    return folder, model


def outputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    image = torch.rand(3, 48, 120)
    with torch.no_grad():
        return model([image])[0]


def test_reload_gives_identical_model(saved: tuple[Path, torch.nn.Module]) -> None:
    folder, model = saved
    reloaded, meta = load_checkpoint(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    a, b = outputs(model), outputs(reloaded)
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    assert meta.detector == CONFIG and meta.assembly.score_threshold == 0.7
    assert meta.training == {"epochs": 3} and meta.data_fingerprint == "abc"


def test_json_is_self_describing(saved: tuple[Path, torch.nn.Module]) -> None:
    doc = json.loads((saved[0] / "checkpoint.json").read_text())
    assert doc["arch"] == "fasterrcnn_resnet18_fpn"
    assert doc["input_size"] == {"min_size": 64, "max_size": 256}
    assert doc["label_map"]["digits"][0] == {"digit": 0, "name": "0", "label": 1, "category_id": 1}
    assert len(doc["weights"]["sha256"]) == 64


def test_float16_storage_halves_size_and_loads(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    folder, model = saved
    half = save_checkpoint(tmp_path / "half", model, CONFIG, dtype="float16")
    full_size = (folder / "weights.safetensors").stat().st_size
    assert (half / "weights.safetensors").stat().st_size < 0.55 * full_size
    reloaded, meta = load_checkpoint(half)
    assert meta.weights_dtype == "float16"
    assert next(reloaded.parameters()).dtype == torch.float32


def test_corrupted_weights_refuse_to_load(saved: tuple[Path, torch.nn.Module]) -> None:
    weights = saved[0] / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(saved[0])


def test_truncated_weights_with_matching_hash_give_clear_error(saved: tuple[Path, torch.nn.Module]) -> None:
    from models.checkpoint import sha256_file

    weights = saved[0] / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    meta_path = saved[0] / "checkpoint.json"
    doc = json.loads(meta_path.read_text())
    doc["weights"]["sha256"] = sha256_file(weights)
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(saved[0])


def test_wrong_hash_in_json_refuses_to_load(saved: tuple[Path, torch.nn.Module]) -> None:
    meta_path = saved[0] / "checkpoint.json"
    doc = json.loads(meta_path.read_text())
    doc["weights"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="sha256"):
        read_checkpoint_meta(saved[0])


@pytest.mark.parametrize("damage", ["missing_json", "bad_json", "wrong_format", "unknown_arch"])
def test_damaged_json_refuses_to_load(saved: tuple[Path, torch.nn.Module], damage: str) -> None:
    meta_path = saved[0] / "checkpoint.json"
    doc = json.loads(meta_path.read_text())
    if damage == "missing_json":
        meta_path.unlink()
    elif damage == "bad_json":
        meta_path.write_text("{not json")
    elif damage == "wrong_format":
        meta_path.write_text(json.dumps({**doc, "format": "other"}))
    else:
        meta_path.write_text(json.dumps({**doc, "detector": {**doc["detector"], "arch": "nope"}}))
    with pytest.raises(CheckpointError):
        load_checkpoint(saved[0])


def test_metrics_update_keeps_hash_valid(saved: tuple[Path, torch.nn.Module]) -> None:
    update_checkpoint_metrics(saved[0], {"valid": {"accuracy": 0.9}})
    meta = read_checkpoint_meta(saved[0] / "checkpoint.json")
    assert meta.metrics == {"map": 0.5, "valid": {"accuracy": 0.9}}


def test_zoom_is_off_unless_saved_on(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    assert read_checkpoint_meta(saved[0]).zoom == ZoomParams() and not ZoomParams().enabled
    zoom = ZoomParams(below_px=50, margin_x=2.0)
    folder = save_checkpoint(tmp_path / "zoomed", saved[1], CONFIG, zoom=zoom)
    assert read_checkpoint_meta(folder).zoom == zoom


def test_checkpoint_without_zoom_entry_loads_with_zoom_off(saved: tuple[Path, torch.nn.Module]) -> None:
    meta_path = saved[0] / "checkpoint.json"
    doc = json.loads(meta_path.read_text())
    del doc["zoom"]
    meta_path.write_text(json.dumps(doc))
    assert read_checkpoint_meta(saved[0]).zoom == ZoomParams()


def test_set_zoom_keeps_hash_valid(saved: tuple[Path, torch.nn.Module]) -> None:
    set_checkpoint_zoom(saved[0], ZoomParams(below_px=50))
    meta = read_checkpoint_meta(saved[0])
    assert meta.zoom.below_px == 50 and meta.metrics == {"map": 0.5}
