"""The checkpoint format: a folder holding `weights.safetensors` and `checkpoint.json`.

The JSON document describes everything needed to rebuild and use the model (architecture arguments,
label map, input size, assembly thresholds, training config, data fingerprint, metrics) and the sha256
of the weights file. Loading verifies the hash and rebuilds the exact model; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torchvision.models.detection import FasterRCNN

from models.assembly import AssemblyParams
from models.atomic import replace_file, write_text
from models.detector import DetectorConfig, build_detector
from models.labels import BACKGROUND_LABEL, DIGIT_NAMES, digit_to_category_id, digit_to_label
from models.zoom import ZoomParams

FORMAT_NAME = "digitserve-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "checkpoint.json"
_FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
# How weights can be stored: float32, float16, or int8 (weight matrices and kernels quantized per
# output channel, everything else float16; see `quantize_int8`).
WEIGHT_DTYPES = ("float32", "float16", "int8")
# Suffix of the tensor that holds an int8 tensor's per-channel scales in a weights file.
SCALE_SUFFIX = ":int8_scale"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, malformed, or does not match its recorded hash."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What `checkpoint.json` says, parsed."""

    detector: DetectorConfig
    assembly: AssemblyParams
    weights_sha256: str
    weights_dtype: str = "float32"
    training: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    zoom: ZoomParams = field(default_factory=ZoomParams)  # off unless the checkpoint turns it on


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8 quantization of a floating-point `weight` [C_out, ...]
    (a conv kernel or a linear layer's matrix): returns (q [C_out, ...] int8 in [-127, 127],
    scale [C_out] float32) with weight ~= q * scale (per channel, the error is at most scale / 2).
    A channel of zeros gets scale 1."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of `quantize_int8`: q [C_out, ...] int8, scale [C_out] -> float32 [C_out, ...]."""
    return q.float() * scale.float().reshape(-1, *([1] * (q.dim() - 1)))


def _stored(name: str, tensor: torch.Tensor, dtype: str) -> dict[str, torch.Tensor]:
    """The tensors that store state-dict entry `name` as `dtype` (see `save_weights`)."""
    t = tensor.detach().cpu()
    if not t.is_floating_point():
        return {name: t.contiguous()}
    if dtype == "int8":
        if t.dim() >= 2:
            q, scale = quantize_int8(t)
            return {name: q.contiguous(), name + SCALE_SUFFIX: scale.contiguous()}
        return {name: t.to(torch.float16).contiguous()}
    return {name: t.to(_FLOAT_DTYPES[dtype]).contiguous()}


def save_weights(
    module: torch.nn.Module | Mapping[str, torch.Tensor], path: Path, dtype: str = "float32"
) -> str:
    """Write `module`'s state dict (or the named tensors given) to `path` (safetensors), creating its
    folder, all or nothing (`models.atomic.replace_file`); returns the file's sha256.
    Floating-point tensors are stored as `dtype`: float32, float16, or int8, which stores every
    tensor of 2 or more dimensions (conv kernels, linear matrices) as int8 with per-output-channel
    scales (`quantize_int8`; the scales under the name + `SCALE_SUFFIX`) and the others (biases,
    norms) as float16. Integer tensors are stored as they are."""
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"dtype must be one of {list(WEIGHT_DTYPES)}, got {dtype!r}")
    tensors: dict[str, torch.Tensor] = {}
    state = module.state_dict() if isinstance(module, torch.nn.Module) else module
    for name, t in state.items():
        tensors.update(_stored(name, t, dtype))
    replace_file(path, lambda partial: save_file(tensors, str(partial)))
    return sha256_file(path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict `save_weights` wrote to `path`, floating-point and int8-quantized tensors as
    float32. Raises SafetensorError or OSError for a file that cannot be read, ValueError for an
    int8 tensor whose scales are missing or do not fit it."""
    raw = load_file(str(path))
    state: dict[str, torch.Tensor] = {}
    for name, t in raw.items():
        if name.endswith(SCALE_SUFFIX):
            if name[: -len(SCALE_SUFFIX)] not in raw:
                raise ValueError(f"{name}: scales of a tensor that is not in the file")
            continue
        scale = raw.get(name + SCALE_SUFFIX)
        if t.dtype == torch.int8 and scale is not None:
            if scale.dim() != 1 or t.dim() == 0 or scale.shape[0] != t.shape[0]:
                raise ValueError(f"{name}: {tuple(scale.shape)} scales do not fit {tuple(t.shape)}")
            state[name] = dequantize_int8(t, scale)
        elif scale is not None:
            raise ValueError(f"{name}: has int8 scales but is stored as {t.dtype}")
        elif t.dtype == torch.int8:
            raise ValueError(f"{name}: int8 without its scales ({name + SCALE_SUFFIX})")
        else:
            state[name] = t.float() if t.is_floating_point() else t
    return state


class PartMeta(Protocol):
    """What a part's json says (`models.reader.ReaderMeta`, `models.refiner.RefinerMeta`)."""

    @property
    def sha256(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=PartMeta)
N = TypeVar("N", bound=torch.nn.Module)


def save_part(
    directory: str | Path,
    name: str,
    module: torch.nn.Module | Mapping[str, torch.Tensor],
    dtype: str,
    meta: Callable[[str], D],
) -> D:
    """Write a checkpoint part (the reader, the box refiner, the int8 ranges) into `directory`
    (created if needed): `module`'s weights (or the named tensors given) as `name`.safetensors in
    `dtype`, and `meta(their sha256)` as `name`.json. Returns that meta."""
    folder = Path(directory)
    written = meta(save_weights(module, folder / f"{name}.safetensors", dtype))
    write_text(folder / f"{name}.json", json.dumps(written.to_dict(), indent=2) + "\n")
    return written


def read_part(
    directory: str | Path, name: str, parse: Callable[[dict[str, Any]], D], error: type[Exception]
) -> tuple[dict[str, torch.Tensor], D]:
    """Verify and read the part `name` in `directory` (see `save_part`): its tensors (`read_weights`)
    and what `parse` makes of its json. Raises `error` for a weights file that does not match its
    recorded sha256 and for anything that cannot be read."""
    folder = Path(directory)
    weights = folder / f"{name}.safetensors"
    try:
        meta = parse(json.loads((folder / f"{name}.json").read_text()))
        if sha256_file(weights) != meta.sha256:
            raise error(f"{name} {folder}: {weights.name} does not match its recorded sha256")
        return read_weights(weights), meta
    except error:
        raise
    except (OSError, SafetensorError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise error(f"{name} {folder}: cannot load: {exc}") from exc


def load_part(
    directory: str | Path,
    name: str,
    parse: Callable[[dict[str, Any]], D],
    build: Callable[[D], N],
    error: type[Exception],
) -> tuple[N, D]:
    """Verify and load the part `name` in `directory` (`read_part`): `build` makes the module its
    weights are loaded into (strict; float32, eval mode, on the CPU). Raises `error` for a weights
    file that does not match its recorded sha256 and for anything that cannot be read or loaded."""
    state, meta = read_part(directory, name, parse, error)
    try:
        module = build(meta)
        module.load_state_dict(state, strict=True)
    except error:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise error(f"{name} {Path(directory)}: cannot load: {exc}") from exc
    return module.eval(), meta


def label_map_document() -> dict[str, Any]:
    """The label map as stored in every checkpoint."""
    return {
        "background_label": BACKGROUND_LABEL,
        "digits": [
            {
                "digit": d,
                "name": DIGIT_NAMES[d],
                "label": digit_to_label(d),
                "category_id": digit_to_category_id(d),
            }
            for d in range(len(DIGIT_NAMES))
        ],
    }


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    detector: DetectorConfig,
    *,
    assembly: AssemblyParams | None = None,
    training: dict[str, Any] | None = None,
    data_fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
    dtype: str = "float32",
    zoom: ZoomParams | None = None,
) -> Path:
    """Write `model`'s weights and the describing JSON into `directory` (created if needed).

    `dtype="float16"` stores floating-point tensors in half precision, `"int8"` quantizes weight
    matrices and kernels per output channel (see `save_weights`); loading casts them back to float32.
    Returns the folder path.
    """
    folder = Path(directory)
    weights_sha256 = save_weights(model, folder / WEIGHTS_FILE, dtype)
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arch": detector.arch,
        "detector": detector.to_dict(),
        "input_size": {"min_size": detector.min_size, "max_size": detector.max_size},
        "label_map": label_map_document(),
        "thresholds": asdict(assembly or AssemblyParams()),
        "zoom": asdict(zoom or ZoomParams()),
        "training": training or {},
        "data_fingerprint": data_fingerprint,
        "metrics": metrics or {},
        "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha256, "dtype": dtype},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
    }
    write_text(folder / META_FILE, json.dumps(document, indent=2, sort_keys=False) + "\n")
    return folder


def save_checkpoint_like(
    directory: str | Path,
    model: torch.nn.Module,
    meta: CheckpointMeta,
    *,
    metrics: dict[str, Any],
    dtype: str = "float32",
    zoom: ZoomParams | None = None,
    assembly: AssemblyParams | None = None,
) -> Path:
    """`save_checkpoint` for weights derived from another checkpoint (exported, averaged): keeps `meta`'s
    architecture, thresholds (unless `assembly` is given), zoom (unless `zoom` is given), training
    config and data fingerprint; `metrics` replace its metrics."""
    return save_checkpoint(
        directory,
        model,
        meta.detector,
        assembly=assembly or meta.assembly,
        training=meta.training,
        data_fingerprint=meta.data_fingerprint,
        metrics=metrics,
        dtype=dtype,
        zoom=zoom or meta.zoom,
    )


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept the checkpoint folder or either of its two files."""
    p = Path(path)
    return p.parent if p.name in (META_FILE, WEIGHTS_FILE) else p


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """Parse and validate `checkpoint.json` and verify the weights' sha256. Raises CheckpointError."""
    folder = resolve_checkpoint_dir(path)
    meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
    for required in (meta_path, weights_path):
        if not required.is_file():
            raise CheckpointError(f"checkpoint {folder}: missing {required.name}")
    try:
        doc = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {folder}: {META_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"checkpoint {folder}: {META_FILE} is not a {FORMAT_NAME} document")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder}: unsupported format_version {doc.get('format_version')}")
    try:
        expected = doc["weights"]["sha256"]
        meta = CheckpointMeta(
            detector=DetectorConfig.from_dict(doc["detector"]),
            assembly=AssemblyParams(**doc["thresholds"]),
            weights_sha256=expected,
            weights_dtype=doc["weights"].get("dtype", "float32"),
            training=doc.get("training") or {},
            data_fingerprint=doc.get("data_fingerprint"),
            metrics=doc.get("metrics") or {},
            created_at=doc.get("created_at", ""),
            zoom=ZoomParams(**doc.get("zoom", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder}: malformed {META_FILE}: {exc!r}") from exc
    actual = sha256_file(weights_path)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {folder}: {WEIGHTS_FILE} sha256 {actual[:16]}... does not match the recorded "
            f"{str(expected)[:16]}...; the file is corrupted or was replaced"
        )
    return meta


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[FasterRCNN, CheckpointMeta]:
    """Verify, rebuild and fill the model. Returns it in eval mode, float32, on `device`."""
    folder = resolve_checkpoint_dir(path)
    meta = read_checkpoint_meta(folder)
    try:
        state = read_weights(folder / WEIGHTS_FILE)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder}: cannot read {WEIGHTS_FILE}: {exc}") from exc
    model = build_detector(meta.detector)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {folder}: weights do not fit {meta.detector.arch}: {exc}") from exc
    return model.to(device).eval(), meta


def update_checkpoint_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Merge `metrics` into a checkpoint's JSON (the weights, and so their hash, are unchanged)."""
    _edit_meta(path, lambda doc: {"metrics": {**doc.get("metrics", {}), **metrics}})


def set_checkpoint_zoom(path: str | Path, zoom: ZoomParams) -> None:
    """Replace a checkpoint's zoom settings in its JSON (the weights, and so their hash, are unchanged)."""
    _edit_meta(path, lambda _doc: {"zoom": asdict(zoom)})


def set_checkpoint_thresholds(path: str | Path, assembly: AssemblyParams) -> None:
    """Replace a checkpoint's number-assembly thresholds in its JSON (the weights, and so their hash,
    are unchanged)."""
    _edit_meta(path, lambda _doc: {"thresholds": asdict(assembly)})


def set_checkpoint_detector(path: str | Path, detector: DetectorConfig) -> None:
    """Replace a checkpoint's detector arguments in its JSON, for those that do not change the weights'
    shapes (test-time proposals, say; the weights, and so their hash, are unchanged). Raises
    ValueError for arguments that build another architecture."""
    old = read_checkpoint_meta(path).detector
    reshaping = ("arch", "num_classes", "anchor_sizes", "aspect_ratios", "fpn_channels", "box_head_dim")
    changed = [name for name in reshaping if getattr(old, name) != getattr(detector, name)]
    if changed:
        raise ValueError(f"these detector arguments change the weights' shapes: {changed}")
    _edit_meta(
        path,
        lambda _doc: {
            "detector": detector.to_dict(),
            "input_size": {"min_size": detector.min_size, "max_size": detector.max_size},
        },
    )


def _edit_meta(path: str | Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite a checkpoint's JSON with the top-level entries `change(document)` returns."""
    meta_path = resolve_checkpoint_dir(path) / META_FILE
    doc = json.loads(meta_path.read_text())
    write_text(meta_path, json.dumps({**doc, **change(doc)}, indent=2) + "\n")
