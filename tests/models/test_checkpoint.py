import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.assembly import AssemblyParams
from models.checkpoint import (
    SCALE_SUFFIX,
    CheckpointError,
    dequantize_int8,
    load_checkpoint,
    quantize_int8,
    read_checkpoint_meta,
    save_checkpoint,
    set_checkpoint_zoom,
    sha256_file,
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


def rehash(folder: Path) -> None:
    """Record the weights file's present sha256 in the checkpoint's json, as if it had been written so."""
    doc = json.loads((folder / "checkpoint.json").read_text())
    doc["weights"]["sha256"] = sha256_file(folder / "weights.safetensors")
    (folder / "checkpoint.json").write_text(json.dumps(doc))


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


def test_int8_quantization_error_is_within_half_a_step_per_channel() -> None:
    torch.manual_seed(0)
    weight = torch.randn(6, 3, 3, 3) * torch.tensor([1e-3, 0.1, 1.0, 10.0, 0.0, 2.0]).view(6, 1, 1, 1)
    q, scale = quantize_int8(weight)
    assert q.dtype == torch.int8 and q.shape == weight.shape and scale.shape == (6,)
    assert int(q.abs().max()) == 127  # each non-zero channel uses the whole range
    error = (dequantize_int8(q, scale) - weight).abs().reshape(6, -1).amax(dim=1)
    assert torch.all(error <= scale / 2 + 1e-7)
    assert torch.equal(dequantize_int8(q, scale)[4], torch.zeros(3, 3, 3))  # a zero channel stays zero


def test_int8_storage_quarters_size_and_keeps_outputs_close(
    tmp_path: Path, saved: tuple[Path, torch.nn.Module]
) -> None:
    folder, model = saved
    small = save_checkpoint(tmp_path / "int8", model, CONFIG, dtype="int8")
    full_size = (folder / "weights.safetensors").stat().st_size
    assert (small / "weights.safetensors").stat().st_size < 0.3 * full_size
    stored = load_file(str(small / "weights.safetensors"))
    kernel = "backbone.body.layer1.0.conv1.weight"
    assert stored[kernel].dtype == torch.int8 and stored[kernel + SCALE_SUFFIX].dtype == torch.float32
    assert stored["backbone.body.bn1.weight"].dtype == torch.float16  # 1-d tensors: float16
    reloaded, meta = load_checkpoint(small)
    assert meta.weights_dtype == "int8"
    original = model.state_dict()
    for key, value in reloaded.state_dict().items():
        assert value.dtype == original[key].dtype, key
        if value.is_floating_point():
            tolerance = 0.02 * float(original[key].abs().max())
            assert torch.allclose(value, original[key], rtol=1e-2, atol=tolerance), key
    # The backbone's features move by a small fraction of their size.
    image = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        a, b = model.backbone(image), reloaded.backbone(image)
    for level in a:
        assert float((a[level] - b[level]).norm() / a[level].norm()) < 0.05, level


@pytest.mark.parametrize(
    ("damage", "message"),
    [("short", "scales do not fit"), ("missing", "int8 without its scales"), ("orphan", "not in the file")],
)
def test_int8_file_with_damaged_scales_refuses_to_load(
    tmp_path: Path, saved: tuple[Path, torch.nn.Module], damage: str, message: str
) -> None:
    small = save_checkpoint(tmp_path / "int8", saved[1], CONFIG, dtype="int8")
    weights = small / "weights.safetensors"
    tensors = load_file(str(weights))
    kernel = "backbone.body.layer1.0.conv1.weight"
    if damage == "short":
        tensors[kernel + SCALE_SUFFIX] = tensors[kernel + SCALE_SUFFIX][:-1]  # one channel short
    elif damage == "missing":
        del tensors[kernel + SCALE_SUFFIX]
    else:
        del tensors[kernel]
    save_file(tensors, str(weights))
    rehash(small)  # the hash fits: only the reading can tell
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(small)


def test_unknown_storage_dtype_is_refused(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        save_checkpoint(tmp_path / "x", saved[1], CONFIG, dtype="bfloat8")


def test_corrupted_weights_refuse_to_load(saved: tuple[Path, torch.nn.Module]) -> None:
    weights = saved[0] / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(saved[0])


def test_truncated_weights_with_matching_hash_give_clear_error(saved: tuple[Path, torch.nn.Module]) -> None:
    weights = saved[0] / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    rehash(saved[0])
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


def test_weights_of_another_shape_refuse_to_load_and_say_so(saved: tuple[Path, torch.nn.Module]) -> None:
    # The json describes a narrower box head than the (intact, hash-valid) weights were trained with.
    meta_path = saved[0] / "checkpoint.json"
    doc = json.loads(meta_path.read_text())
    narrower = doc["detector"]["box_head_dim"] // 2
    meta_path.write_text(json.dumps({**doc, "detector": {**doc["detector"], "box_head_dim": narrower}}))
    with pytest.raises(CheckpointError, match="weights do not fit fasterrcnn_resnet18_fpn"):
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
