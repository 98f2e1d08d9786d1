"""Training configuration: a dataclass, named presets, YAML/JSON files and CLI overrides.

`--config seed` picks a preset; `--config configs/x.yaml` reads a file whose keys override what it
names under `base`: a preset (default "seed") or another config file. The resolved config is written
next to every run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from models.assembly import AssemblyParams
from models.detector import DETECTOR_PRESETS, DetectorConfig
from training.transforms import AugmentConfig


@dataclass(frozen=True)
class DataConfig:
    """Where a data set's splits live, relative to `root` (HW2 layout by default)."""

    root: str = "../shared/data/svhn-hw2"
    train_images: str = "train"
    train_json: str = "train.json"  # under `root`, else as given (e.g. runs/..., by training.complete)
    extra_train_json: tuple[str, ...] = ()  # more annotation files over `train_images` (e.g. noisy labels)
    # more data sets whose training images are added to this one's, each a folder in the HW2 layout
    # (`train/` + `train.json`, e.g. made by `training.synth`) or the COCO 2017 one (`images/train2017/` +
    # `annotations/instances_train2017.json`, e.g. ../shared/data/orand-car-a)
    extra_train_roots: tuple[str, ...] = ()
    valid_images: str = "valid"
    valid_json: str = "valid.json"
    test_images: str = "test"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults are the seed recipe."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    assembly: AssemblyParams = field(default_factory=AssemblyParams)
    epochs: int = 15
    batch_size: int = 8
    workers: int = 4
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-4
    cosine_t_max: int = 10  # in epochs; PyTorch's cosine rises again after T_max, as the seed had it
    warmup_steps: int = 0
    # "cosine": the seed's per-epoch cosine over `cosine_t_max`. "cyclic": every epoch falls from `lr` to
    # `lr * cyclic_min_ratio` on a cosine, so each epoch ends at a low rate (for weight averaging, SWA)
    schedule: str = "cosine"
    cyclic_min_ratio: float = 0.01
    amp: bool = True  # float16 autocast with loss scaling; only takes effect on CUDA
    # bfloat16 autocast for the training step on the CPU (validation loss stays float32): ~1.5 x the
    # images/s on a host with AMX (experiment 117); without AMX slower than float32 (stop 57's check)
    cpu_bf16: bool = False
    freeze_backbone: bool = False  # the ResNet body's weights and BatchNorm statistics stay as loaded
    # module-name prefixes of the detector whose weights and BatchNorm statistics stay as loaded, e.g.
    # ["backbone", "rpn"] trains the box head alone (`training.train.freeze`)
    freeze: tuple[str, ...] = ()
    grad_clip: float = 10.0  # max global grad norm; 0 disables
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int = 0  # 0 = whole epoch; small values make smoke runs
    max_valid_images: int = 0  # 0 = whole validation split
    eval_every: int = 1  # validation mAP every N epochs (validation loss runs every epoch)
    init_from: str = ""  # checkpoint whose weights start this run (e.g. synthetic pretraining)
    # sha256 of `init_from`'s weights file: when set, the run refuses any other weights there, so a
    # config that names a folder outside git (runs/stage3) cannot start quietly from the wrong model
    init_sha256: str = ""
    # Residual blocks `init_from` lacks (a deeper backbone than the source's): "random", or "identity":
    # each starts as the identity (its last BatchNorm's scale and shift zero), so the deeper detector
    # starts out computing exactly what the source did
    new_blocks: str = "random"
    save_dtype: str = "float32"
    keep_epochs: bool = False  # also keep every epoch's weights under epochs/NNN (to average them)
    out_dir: str = "runs"
    run_name: str = ""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; supported: {SCHEDULES}")
        if self.new_blocks not in NEW_BLOCKS:
            raise ValueError(f"unknown new_blocks {self.new_blocks!r}; supported: {NEW_BLOCKS}")
        if self.init_sha256:
            if not self.init_from:
                raise ValueError("init_sha256 is set but init_from is not: there are no weights to check")
            if not SHA256_HEX.fullmatch(self.init_sha256):
                raise ValueError(f"init_sha256 must be 64 lower-case hex digits, got {self.init_sha256!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCHEDULES = ("cosine", "cyclic")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
NEW_BLOCKS = ("random", "identity")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "seed": TrainConfig(),
    # CPU-sized: the fast detector, no AMP, 2 loader workers for a 2-core machine.
    "fast": TrainConfig(
        detector=DETECTOR_PRESETS["fast"],
        batch_size=16,
        workers=2,
        lr=0.02,
        warmup_steps=200,
        epochs=12,
        cosine_t_max=12,
    ),
}


def merge_config(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return `base` with `overrides` applied; nested sections merge key by key."""
    nested = {
        "detector": DetectorConfig,
        "data": DataConfig,
        "augment": AugmentConfig,
        "assembly": AssemblyParams,
    }
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in nested:
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a mapping")
            if key == "detector" and "preset" in value:
                value = {**DETECTOR_PRESETS[value.pop("preset")].to_dict(), **value}
            current = asdict(getattr(base, key))
            changes[key] = _from_dict(nested[key], {**current, **value})
        else:
            changes[key] = value
    try:
        return replace(base, **changes)
    except TypeError as exc:
        raise ValueError(f"bad training config: {exc}") from exc


def load_config(spec: str) -> TrainConfig:
    """A preset name, or a YAML/JSON file whose keys override its `base`.

    `base` is a preset name (default "seed") or another config file, named relative to this file's
    folder, so that a variant (another seed, say) states only what it changes.
    """
    return _load_config(spec, ())


def _load_config(spec: str, children: tuple[Path, ...]) -> TrainConfig:
    if spec in TRAIN_PRESETS:
        return TRAIN_PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--config {spec!r} is neither a preset {sorted(TRAIN_PRESETS)} nor a file")
    if path.resolve() in children:
        raise ValueError(f"{path}: config bases form a cycle")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping")
    base = str(data.pop("base", "seed"))
    parent = base if base in TRAIN_PRESETS else str(path.parent / base)
    if parent != base and not Path(parent).is_file():
        presets = sorted(TRAIN_PRESETS)
        raise ValueError(f"{path}: base {base!r} is neither a preset {presets} nor a file beside it")
    return merge_config(_load_config(parent, (*children, path.resolve())), data)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from `to_dict()` output (as stored in checkpoints and run folders)."""
    return merge_config(TrainConfig(), data)


def write_config(config: TrainConfig, path: Path) -> None:
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
