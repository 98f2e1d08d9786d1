"""The checkpoint format: a folder holding `weights.safetensors` and `checkpoint.json`.

The JSON document describes everything needed to rebuild and use the model (architecture arguments,
label map, input size, assembly thresholds, training config, data fingerprint, metrics) and the sha256
of the weights file. Loading verifies the hash and rebuilds the exact model; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
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
from models.detector import DetectorConfig, build_detector
from models.labels import BACKGROUND_LABEL, DIGIT_NAMES, digit_to_category_id, digit_to_label
from models.zoom import ZoomParams

FORMAT_NAME = "digitserve-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "checkpoint.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


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


def save_weights(module: torch.nn.Module, path: Path, dtype: str = "float32") -> str:
    """Write `module`'s state dict to `path` (safetensors; floating-point tensors as `dtype`, float16
    or float32), creating its folder; returns the file's sha256."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: (t.to(_DTYPES[dtype]) if t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in module.state_dict().items()
    }
    save_file(tensors, str(path))
    return sha256_file(path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict `save_weights` wrote to `path`, floating-point tensors as float32. Raises
    SafetensorError or OSError for a file that cannot be read."""
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


class PartMeta(Protocol):
    """What a part's json says (`models.reader.ReaderMeta`, `models.refiner.RefinerMeta`)."""

    @property
    def sha256(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=PartMeta)
N = TypeVar("N", bound=torch.nn.Module)


def save_part(
    directory: str | Path, name: str, module: torch.nn.Module, dtype: str, meta: Callable[[str], D]
) -> D:
    """Write a checkpoint part (the reader, the box refiner) into `directory` (created if needed):
    `module`'s weights as `name`.safetensors in `dtype`, and `meta(their sha256)` as `name`.json.
    Returns that meta."""
    folder = Path(directory)
    written = meta(save_weights(module, folder / f"{name}.safetensors", dtype))
    (folder / f"{name}.json").write_text(json.dumps(written.to_dict(), indent=2) + "\n")
    return written


def load_part(
    directory: str | Path,
    name: str,
    parse: Callable[[dict[str, Any]], D],
    build: Callable[[D], N],
    error: type[Exception],
) -> tuple[N, D]:
    """Verify and load the part `name` in `directory` (see `save_part`): `parse` reads its json,
    `build` makes the module its weights are loaded into (strict; float32, eval mode, on the CPU).
    Raises `error` for a weights file that does not match its recorded sha256 and for anything that
    cannot be read or loaded."""
    folder = Path(directory)
    weights = folder / f"{name}.safetensors"
    try:
        meta = parse(json.loads((folder / f"{name}.json").read_text()))
        if sha256_file(weights) != meta.sha256:
            raise error(f"{name} {folder}: {weights.name} does not match its recorded sha256")
        module = build(meta)
        module.load_state_dict(read_weights(weights), strict=True)
    except error:
        raise
    except (OSError, SafetensorError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise error(f"{name} {folder}: cannot load: {exc}") from exc
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

    `dtype="float16"` stores floating-point tensors in half precision (loading casts them back).
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
    (folder / META_FILE).write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
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
    except (SafetensorError, OSError) as exc:
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


def _edit_meta(path: str | Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite a checkpoint's JSON with the top-level entries `change(document)` returns."""
    meta_path = resolve_checkpoint_dir(path) / META_FILE
    doc = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**doc, **change(doc)}, indent=2) + "\n")
