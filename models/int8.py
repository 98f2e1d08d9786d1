"""Int8 inference for the detector on the CPU, and the calibration it needs as a checkpoint part.

Why: on a 2-core CPU the detector's convolutions are most of a request's time, and the CPU's integer
kernels (PyTorch's "x86" quantized engine, fbgemm + oneDNN) run them in about half the time of
float32. What is quantized:

- the backbone (ResNet body and FPN) and the RPN head's 3x3 convolutions: statically, int8 weights
  per output channel and int8 activations whose ranges were measured once, on training images
  (`calibrate_detector`), and ship with the checkpoint as the part `int8` (`int8.safetensors`: a
  scale and a zero point per activation, a few kB; `int8.json`: how they were measured);
- the box head's two linear layers: dynamically (int8 weights, ranges taken per call).

The RPN's objectness and box-delta convolutions (1x1, a few channels) and the box predictor stay
float32: they set the scores and boxes directly, and cost little. The crop networks after the
detector (`models.reader.CropNet`: the box refiner and the reader) can run their convolutions in
int8 too, statically, with ranges measured on crops of training images (`calibrate_crop_net`);
their normalisation and their linear heads stay float32. Their ranges are in the same part, under
the net's name, with the sha256 of the weights they were measured on (`Int8Meta.crop_nets`): a
net whose weights changed since runs in float32, with a warning (model card experiment 42).

Same weights, so the checkpoint's weights file is untouched; quantizing is a rewrite at load time,
like `models.optimize`'s, applied by `models.optimize.load_prepared_detector` (and
`load_prepared_reader` / `load_prepared_refiner`) when a checkpoint has the part and the model runs
on the CPU with the x86 engine (`int8_supported`). Answers are close to, not equal to, float32's (model
card: validation mAP and accuracy within noise of float32's; the bare forward ~1/3 faster).

PyTorch marks `torch.ao.quantization` deprecated in favour of the torchao package; the pinned torch
(2.14.1) has it and this module silences its notices. On a CPU without the x86 engine
(`int8_supported`) the model runs in float32.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig, quantize_dynamic
from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, ObserverBase
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from torch.fx import GraphModule
from torchvision.models.detection import FasterRCNN

from models.checkpoint import read_checkpoint_meta, read_part, resolve_checkpoint_dir, save_part
from models.reader import CropNet

log = logging.getLogger(__name__)

INT8 = "int8"  # the part's name in a checkpoint folder
INT8_STATS = f"{INT8}.safetensors"
INT8_META = f"{INT8}.json"
ENGINE = "x86"  # the quantized engine the qconfig is made for (reduce_range on: AVX2-safe)
# What the statically quantized modules are called in the stats (keys "<name>.<observer>.scale" and
# "<name>.<observer>.zero_point").
BACKBONE = "backbone"
RPN_CONV = "rpn_conv"
CROP_NETS = ("refiner", "reader")  # the crop networks that can have ranges, by part name
_OBSERVER = "activation_post_process"
C = TypeVar("C", bound=CropNet)


class Int8Error(RuntimeError):
    """An int8 part is missing, malformed, altered, or does not fit the detector."""


@dataclass(frozen=True)
class Int8Meta:
    """What `int8.json` says."""

    sha256: str  # of int8.safetensors
    detector_sha256: str  # the checkpoint weights the ranges were measured with
    calibration_images: int
    calibration: str = ""  # where the images came from, in words
    engine: str = ENGINE
    metrics: dict[str, Any] = field(default_factory=dict)
    # crop network (CROP_NETS) -> sha256 of the weights its ranges were measured on; parts written
    # before experiment 42 have none
    crop_nets: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Int8Meta:
        return cls(
            sha256=str(doc["sha256"]),
            detector_sha256=str(doc["detector_sha256"]),
            calibration_images=int(doc["calibration_images"]),
            calibration=str(doc.get("calibration", "")),
            engine=str(doc.get("engine", ENGINE)),
            metrics=dict(doc.get("metrics") or {}),
            crop_nets={str(k): str(v) for k, v in (doc.get("crop_nets") or {}).items()},
        )


def int8_supported() -> bool:
    """True where int8 inference can run here: the active quantized engine is x86's (PyTorch's
    default on x86 CPUs; ARM CPUs have another, for which the ranges were not measured)."""
    return torch.backends.quantized.engine in (ENGINE, "fbgemm")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation notices `torch.ao.quantization` prints on every use (see above)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecat|torchao|pytorch/ao).*")
        yield


class _Stored(MinMaxObserver):
    """An activation observer that measures nothing: it hands convert_fx the scale and zero point
    loaded into it (buffers, so `load_state_dict` sets them), where calibration measured them."""

    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.scale, self.zero_point


# Calibration measures activations with PyTorch's x86 default (a histogram per activation; 7-bit
# range, as the x86 engine needs on AVX2 CPUs); loading hands the stored results back.
_MEASURED = functools.partial(HistogramObserver, reduce_range=True)
_STORED = functools.partial(_Stored, reduce_range=True)


def _mapping(observer: Callable[..., ObserverBase]) -> QConfigMapping:
    """`observer` on every activation, x86's per-channel int8 weights."""
    weight = get_default_qconfig(ENGINE).weight
    return QConfigMapping().set_global(QConfig(activation=observer, weight=weight))


def _observed(model: FasterRCNN, observer: Callable[..., ObserverBase]) -> dict[str, GraphModule]:
    """The statically quantized modules of `model` (backbone, RPN head convolutions) as observed
    graphs (`prepare_fx`) with `observer` on every activation and x86's per-channel int8 weights."""
    mapping = _mapping(observer)
    channels = int(model.backbone.out_channels)
    with _quiet():
        return {
            BACKBONE: prepare_fx(model.backbone, mapping, (torch.zeros(1, 3, 64, 64),)),
            RPN_CONV: prepare_fx(model.rpn.head.conv, mapping, (torch.zeros(1, channels, 8, 8),)),
        }


def _load_observed(name: str, module: GraphModule, stats: dict[str, torch.Tensor]) -> None:
    """Hand the entries of `stats` under "<name>." to the stored observers of `module` (`_STORED`).
    Raises Int8Error when they are not exactly its observers' scales and zero points."""
    expected = {
        f"{child}.{key}"
        for child, _ in module.named_children()
        if child.startswith(_OBSERVER)
        for key in ("scale", "zero_point")
    }
    given = {k[len(name) + 1 :]: v for k, v in stats.items() if k.startswith(name + ".")}
    if set(given) != expected:
        missing, extra = sorted(expected - set(given)), sorted(set(given) - expected)
        raise Int8Error(
            f"the int8 parameters do not fit this {name}: "
            f"{len(missing)} missing ({', '.join(missing[:2])}), "
            f"{len(extra)} unexpected ({', '.join(extra[:2])})"
        )
    try:
        module.load_state_dict(given, strict=False)
    except RuntimeError as exc:
        raise Int8Error(f"the int8 parameters do not fit this {name}: {exc}") from exc


def _observer_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The scale and zero point of every activation observer of an observed graph, by
    "<observer>.scale" / "<observer>.zero_point" (tensors of shape [1])."""
    state: dict[str, torch.Tensor] = {}
    for name, child in module.named_children():
        if name.startswith(_OBSERVER) and isinstance(child, ObserverBase):
            scale, zero_point = child.calculate_qparams()
            state[f"{name}.scale"] = scale.detach().reshape(1).float()
            state[f"{name}.zero_point"] = zero_point.detach().reshape(1).long()
    return state


def calibrate_detector(model: FasterRCNN, images: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Measure the activation ranges of `model`'s statically quantized modules on `images` and return
    them as the quantization parameters `quantize_detector` takes: a scale (float32) and a zero point
    (int64) per quantized activation, keyed "<module>.<observer>.scale" / ".zero_point", shape [1].

    `model`: an eval-mode detector as it will be served, already through
    `models.optimize.prepare_for_inference` on the CPU (BatchNorm folded: the observed graph must be
    the one `quantize_detector` rebuilds); it is not changed. `images`: [3, H, W] float tensors in
    [0, 1], any sizes (the model's own transform resizes and normalises them). The RPN head's
    convolutions are measured on the int8 backbone's features, as they will run. Ranges come from
    PyTorch's histogram observer (the range that minimises the quantization error, not the extremes).
    Raises ValueError when there are no images.
    """
    observed = _observed(model, _MEASURED)
    batches: list[torch.Tensor] = []
    with torch.inference_mode(), _quiet():
        for image in images:  # lazily: a progress bar over `images` follows this, the longer pass
            batches.append(model.transform([image])[0].tensors)
            observed[BACKBONE](batches[-1])
        if not batches:
            raise ValueError("calibrate_detector needs at least one image")
        stats = {f"{BACKBONE}.{k}": v for k, v in _observer_state(observed[BACKBONE]).items()}
        backbone = convert_fx(observed[BACKBONE])
        for batch in batches:
            for level in backbone(batch).values():
                observed[RPN_CONV](level)
    stats.update({f"{RPN_CONV}.{k}": v for k, v in _observer_state(observed[RPN_CONV]).items()})
    return stats


def quantize_detector(model: FasterRCNN, stats: dict[str, torch.Tensor]) -> FasterRCNN:
    """Rewrite eval-mode `model` (prepared for the CPU, as in `calibrate_detector`) in place to run
    int8 with the quantization parameters `stats` (`calibrate_detector`); returns it. Its inputs
    and outputs are unchanged (images in; boxes [x1, y1, x2, y2] in input pixels, labels and scores
    out); its backbone, RPN head convolutions and box head run in int8. Raises Int8Error when `stats`
    do not fit the model's quantized activations (another architecture, say)."""
    observed = _observed(model, _STORED)
    for name, module in observed.items():
        _load_observed(name, module, stats)
    with _quiet():
        model.backbone = convert_fx(observed[BACKBONE])
        model.rpn.head.conv = convert_fx(observed[RPN_CONV])
        model.roi_heads.box_head = quantize_dynamic(model.roi_heads.box_head, {nn.Linear}, torch.qint8)
    return model


def _observed_features(net: CropNet, observer: Callable[..., ObserverBase]) -> GraphModule:
    """`net.features` without the identities that folded BatchNorms leave (so that each convolution
    fuses with its ReLU), as an observed graph (`prepare_fx`): `observer` on every activation."""
    layers = nn.Sequential(*(m for m in net.features.children() if not isinstance(m, nn.Identity)))
    first = next(m for m in layers.modules() if isinstance(m, nn.Conv2d))
    with _quiet():
        return prepare_fx(layers, _mapping(observer), (torch.zeros(1, first.in_channels, 16, 16),))


def calibrate_crop_net(net: CropNet, name: str, crops: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Measure the activation ranges of `net`'s convolutions (`CropNet.features`) on `crops` and
    return them as `quantize_crop_net` takes them, keyed "<name>.<observer>.scale" / ".zero_point"
    (shape [1]; `name` is the net's part name, one of CROP_NETS).

    `net`: an eval-mode crop network as it is served (`models.optimize.prepare_for_inference`), not
    changed. `crops`: batches FloatTensor[N, C, S, S] as `net` takes them (`models.reread.crop_digits`,
    `models.refiner.crop_boxes`). Raises ValueError for an unknown `name` or when no crop comes."""
    if name not in CROP_NETS:
        raise ValueError(f"no crop network called {name!r}: one of {', '.join(CROP_NETS)}")
    observed = _observed_features(net, _MEASURED)
    seen = 0
    with torch.inference_mode(), _quiet():
        for batch in crops:
            if len(batch):
                observed(net.normalise(batch))
                seen += len(batch)
    if not seen:
        raise ValueError(f"calibrate_crop_net needs at least one crop for the {name}")
    return {f"{name}.{k}": v for k, v in _observer_state(observed).items()}


def quantize_crop_net(net: C, name: str, stats: dict[str, torch.Tensor]) -> C:
    """Rewrite eval-mode `net` (prepared for the CPU) in place so that its convolutions run in int8
    with the ranges of `stats` under `name` (`calibrate_crop_net`); returns it. Same inputs and
    outputs as before (crops in, the head's float32 outputs out), close to float32's. Raises
    Int8Error when the ranges do not fit the net (another width, say)."""
    observed = _observed_features(net, _STORED)
    _load_observed(name, observed, stats)
    with _quiet():
        net.features = convert_fx(observed)
    return net


def crop_net_ranges(
    part: tuple[dict[str, torch.Tensor], Int8Meta], name: str, weights_sha256: str
) -> dict[str, torch.Tensor] | None:
    """The ranges of crop network `name` in an int8 part (`load_int8`) when they were measured on the
    weights `weights_sha256`; None when the part has none for it, or, with a warning, when they were
    measured on other weights (a reader or refiner replaced since; it then runs in float32)."""
    stats, meta = part
    measured = meta.crop_nets.get(name)
    if measured is None:
        return None
    if measured != weights_sha256:
        log.warning(
            "the int8 ranges of the %s were measured on other weights (%s, these are %s): it runs in "
            "float32; run python -m training.calibrate again",
            name,
            measured[:12],
            weights_sha256[:12],
        )
        return None
    return {k: v for k, v in stats.items() if k.startswith(name + ".")}


def is_quantized(model: nn.Module) -> bool:
    """True when `model` holds int8 modules (`quantize_detector` ran on it): torch.ao's quantized
    layers, fused ones (conv + ReLU) included."""
    return any(
        type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
        for m in model.modules()
    )


def int8_parts(parts: Mapping[str, nn.Module | None]) -> list[str]:
    """The names of `parts` (name -> module, None for a part not loaded) that run in int8
    (`is_quantized`), in the order given."""
    return [name for name, part in parts.items() if part is not None and is_quantized(part)]


def save_int8(
    directory: str | Path,
    stats: dict[str, torch.Tensor],
    *,
    detector_sha256: str,
    calibration_images: int,
    calibration: str = "",
    metrics: dict[str, Any] | None = None,
    crop_nets: dict[str, str] | None = None,
) -> Int8Meta:
    """Write `stats` (`calibrate_detector`, plus any `calibrate_crop_net`'s, whose nets' weights
    `crop_nets` names by sha256) as `int8.safetensors` and their description as `int8.json` into
    `directory` (created if needed; `models.checkpoint.save_part`); returns that description."""
    nets = dict(crop_nets or {})
    if unknown := sorted(set(nets) - set(CROP_NETS)):
        raise ValueError(f"no crop network called {', '.join(unknown)}: one of {', '.join(CROP_NETS)}")

    def meta(sha256: str) -> Int8Meta:
        return Int8Meta(sha256, detector_sha256, calibration_images, calibration, ENGINE, metrics or {}, nets)

    return save_part(directory, INT8, stats, "float32", meta)


def has_int8(directory: str | Path) -> bool:
    """True when `directory` (a checkpoint folder) holds an int8 part (its `int8.json`)."""
    return (Path(directory) / INT8_META).is_file()


def load_int8(directory: str | Path) -> tuple[dict[str, torch.Tensor], Int8Meta]:
    """Verify and read the int8 part in `directory` (`models.checkpoint.read_part`). Raises Int8Error
    for a stats file that does not match its recorded sha256 and for anything that cannot be read."""
    return read_part(directory, INT8, Int8Meta.from_dict, Int8Error)


def checkpoint_int8(
    checkpoint: str | Path, detector_sha256: str
) -> tuple[dict[str, torch.Tensor], Int8Meta] | None:
    """The int8 part of a checkpoint folder whose detector weights hash to `detector_sha256`, or None
    when it has none. Raises Int8Error when the part was measured on other weights."""
    folder = resolve_checkpoint_dir(checkpoint)
    if not has_int8(folder):
        return None
    stats, meta = load_int8(folder)
    if meta.detector_sha256 != detector_sha256:
        raise Int8Error(
            f"int8 {folder}: its ranges were measured on other detector weights "
            f"({meta.detector_sha256[:12]}, the checkpoint's are {detector_sha256[:12]}): "
            "run python -m training.calibrate again"
        )
    return stats, meta


def copy_int8(
    source: str | Path,
    directory: str | Path,
    detector_sha256: str,
    crop_nets: Mapping[str, str] | None = None,
) -> Int8Meta | None:
    """Write the int8 part of checkpoint `source` into `directory`, now for the detector weights
    `detector_sha256` (the same detector exported anew, in another dtype, say); None when `source` has
    none. `crop_nets` gives the new weights sha256 of each crop network carried along (the same net
    in another dtype): its ranges come too, when `source` has them, and those of any other net are
    left out; None keeps the source's as they are. Raises Int8Error when the part does not belong to
    `source`'s weights."""
    part = checkpoint_int8(source, read_checkpoint_meta(source).weights_sha256)
    if part is None:
        return None
    stats, meta = part
    nets = dict(meta.crop_nets)
    if crop_nets is not None:
        nets = {name: sha for name, sha in crop_nets.items() if name in meta.crop_nets}
        left_out = set(meta.crop_nets) - set(nets)
        stats = {k: v for k, v in stats.items() if k.split(".", 1)[0] not in left_out}
    return save_int8(
        directory,
        stats,
        detector_sha256=detector_sha256,
        calibration_images=meta.calibration_images,
        calibration=meta.calibration,
        metrics=meta.metrics,
        crop_nets=nets,
    )
