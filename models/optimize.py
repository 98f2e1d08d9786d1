"""Inference-only rewrites of a loaded detector: same outputs, less CPU time.

Folding each BatchNorm into the convolution before it removes one pass over every feature map, and
channels-last tensors let oneDNN run the small convolutions of a batch-1 call (the RPN and FPN on
the coarse levels, ResNet's last stage) that PyTorch otherwise gives to its slow reference kernel.
On the shipped model and a 2-core CPU the two together cut the bare forward by about a tenth
(`benchmarks/bench_service.py` prints both). The box head's RoIAlign, ~15 % of the bare forward
on the CPU, runs as small matrix products (`models.roi_align`): ~30 % less pooling time, ~6 % off
the bare forward. The input transform normalises each image after resizing it when the resize
shrinks it (`SmallerSideTransform`: a phone photo's search tiles are normalised at the detector's
size, not at theirs). A prepared model cannot be trained or saved in the checkpoint format (its
BatchNorm layers are gone): load, prepare, serve. `load_prepared_detector` does all three for a
checkpoint's detector and, on the CPU, runs it in int8 when the checkpoint has the calibration for
it (`models.int8`: about a third off the bare forward), and the reader and box refiner likewise
when the checkpoint has their ranges (model card experiment 42).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import MultiScaleRoIAlign

from models.checkpoint import CheckpointMeta, load_checkpoint, resolve_checkpoint_dir
from models.int8 import (
    Int8Meta,
    checkpoint_int8,
    crop_net_ranges,
    has_int8,
    int8_supported,
    load_int8,
    quantize_crop_net,
    quantize_detector,
)
from models.reader import CropNet, DigitReader, ReaderMeta, has_reader, load_reader
from models.refiner import BoxRefiner, RefinerMeta, has_refiner, load_refiner
from models.roi_align import WindowedMultiScaleRoIAlign
from models.zoom import input_scale

# convN -> bnN inside torchvision's residual blocks (`downsample` is an nn.Sequential, handled below)
_BLOCK_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

log = logging.getLogger(__name__)


def fuse_conv_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; returns how many.

    Only orders that are known to be execution orders are fused: consecutive children of an
    nn.Sequential (torchvision's Conv2dNormActivation, a block's `downsample`) or of the
    IntermediateLayerGetter of a ResNet body (its stem), and the convN/bnN pairs of ResNet blocks. The folded
    BatchNorm becomes nn.Identity. `module` must be in eval mode (running statistics are folded).
    """
    if module.training:
        raise ValueError("fuse_conv_batchnorm needs a model in eval mode (call .eval() first)")
    fused = 0
    for child in list(module.modules()):
        if isinstance(child, (BasicBlock, Bottleneck)):
            pairs = [(c, b) for c, b in _BLOCK_PAIRS if hasattr(child, c)]
        elif isinstance(child, (nn.Sequential, IntermediateLayerGetter)):
            names = list(child._modules)
            pairs = list(itertools.pairwise(names))
        else:
            continue
        fused += sum(_fuse_pair(child, conv_name, bn_name) for conv_name, bn_name in pairs)
    return fused


def _fuse_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = parent._modules[conv_name], parent._modules[bn_name]
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
        return False
    parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
    parent._modules[bn_name] = nn.Identity()
    return True


M = TypeVar("M", bound=nn.Module)


class SmallerSideTransform(GeneralizedRCNNTransform):
    """torchvision's eval transform with each image normalised on the smaller of its own pixels and
    its resized copy's.

    Normalising ((x - mean) / std per channel) and bilinear resizing commute: each output pixel of the
    resize is a weighted mean of input pixels, weights summing to 1. torchvision normalises first, so
    a 1512 x 2016 photo is normalised at full size before it is shrunk to the detector's 96 px; here
    an image the resize shrinks is normalised after it. Outputs differ from torchvision's only by
    float32 rounding (at most 7e-7 on the 148 validation photos the resize shrinks). Training, and
    any call with targets, is torchvision's own.
    """

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, torch.Tensor]] | None]:
        if self.training or targets is not None:
            return super().forward(images, targets)
        prepared = [self.prepare(image) for image in images]
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in prepared]
        return ImageList(self.batch_images(prepared, size_divisible=self.size_divisible), sizes), None

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """One float image [3, H, W] in [0, 1] -> normalised and resized [3, H', W']."""
        if image.dim() != 3:
            raise ValueError(f"images are expected to be 3d tensors [C, H, W], got {tuple(image.shape)}")
        height, width = image.shape[-2:]
        if input_scale(height, width, self.min_size[-1], self.max_size) < 1:
            return self.normalize(self.resize(image, None)[0])
        return self.resize(self.normalize(image), None)[0]

    @classmethod
    def like(cls, transform: GeneralizedRCNNTransform) -> SmallerSideTransform:
        """The same sizes, mean and std as `transform`, in eval mode."""
        return cls(transform.min_size, transform.max_size, transform.image_mean, transform.image_std).eval()


def prepare_for_inference(model: M, device: torch.device) -> M:
    """Rewrite an eval-mode detector (or the reader, `models.reader`) in place for serving on
    `device`; returns it.

    BatchNorm is folded and a detector's input transform becomes `SmallerSideTransform` on every
    device; on the CPU only (the only device they were measured on),
    channels-last memory is used and a detector's box pooler pools with `models.roi_align` instead
    of torchvision's RoIAlign kernel. Boxes, labels and scores match the unprepared model to float32
    rounding (~1e-5 px on the shipped model).
    """
    fuse_conv_batchnorm(model)
    transform = getattr(model, "transform", None)
    if (
        isinstance(transform, GeneralizedRCNNTransform)
        and not isinstance(transform, SmallerSideTransform)
        and transform.fixed_size is None
    ):
        model.transform = SmallerSideTransform.like(transform)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
        heads = getattr(model, "roi_heads", None)
        if isinstance(heads, RoIHeads) and type(heads.box_roi_pool) is MultiScaleRoIAlign:
            heads.box_roi_pool = WindowedMultiScaleRoIAlign.like(heads.box_roi_pool)
    return model


def load_prepared_detector(
    checkpoint: str | Path, device: torch.device, *, use_int8: bool = True
) -> tuple[FasterRCNN, CheckpointMeta, Int8Meta | None]:
    """Verify and load the checkpoint's detector on `device`, prepared for serving
    (`prepare_for_inference`), with its metadata. On the CPU, when `use_int8` and the checkpoint
    has an int8 part (`models.int8`), the detector runs in int8, and the part's meta comes third
    (None when the detector runs in floating point). Raises CheckpointError for a checkpoint that
    cannot be used, Int8Error for an int8 part the CPU would use that is altered or was measured on
    other weights."""
    model, meta = load_checkpoint(checkpoint, device)
    model = prepare_for_inference(model, device)
    if not (use_int8 and has_int8(resolve_checkpoint_dir(checkpoint))):
        return model, meta, None
    if device.type != "cpu":
        log.info("int8 is for the CPU: the detector runs in floating point on %s", device)
        return model, meta, None
    if not int8_supported():
        engine = torch.backends.quantized.engine
        log.warning("the checkpoint has int8 ranges but this CPU's engine is %r: float32 it is", engine)
        return model, meta, None
    part = checkpoint_int8(checkpoint, meta.weights_sha256)
    assert part is not None  # has_int8 above
    stats, int8 = part
    log.info("the detector runs in int8 (models/int8.py, ranges from %d images)", int8.calibration_images)
    return quantize_detector(model, stats), meta, int8


def load_prepared_reader(
    checkpoint: str | Path, device: torch.device, *, use_int8: bool = True
) -> tuple[DigitReader, ReaderMeta] | None:
    """The reader in a checkpoint (or reader) folder (`models.reader.load_reader`), prepared for
    serving on `device`, or None when the folder has none. On the 48 px reader and 2 CPU cores,
    preparing takes 3 crops from 5.4 to 4.0 ms. On the CPU, with `use_int8`, its convolutions run in
    int8 when the checkpoint's int8 part has ranges for these weights (`crop_net_int8`)."""
    folder = resolve_checkpoint_dir(checkpoint)
    if not has_reader(folder):
        return None
    reader, meta = load_reader(folder, device)
    reader = prepare_for_inference(reader, device)
    return crop_net_int8(reader, "reader", folder, meta.sha256, device, use_int8), meta


def load_prepared_refiner(
    checkpoint: str | Path, device: torch.device, *, use_int8: bool = True
) -> tuple[BoxRefiner, RefinerMeta] | None:
    """The box refiner in a checkpoint (or refiner) folder (`models.refiner.load_refiner`), prepared
    for serving on `device`, or None when the folder has none; in int8 as `load_prepared_reader`."""
    folder = resolve_checkpoint_dir(checkpoint)
    if not has_refiner(folder):
        return None
    refiner, meta = load_refiner(folder, device)
    refiner = prepare_for_inference(refiner, device)
    return crop_net_int8(refiner, "refiner", folder, meta.sha256, device, use_int8), meta


N = TypeVar("N", bound=CropNet)


def crop_net_int8(net: N, name: str, folder: Path, sha256: str, device: torch.device, use_int8: bool) -> N:
    """`net` (a prepared crop network, `name` in `models.int8.CROP_NETS`, weights hashing to `sha256`)
    with its convolutions in int8 (`models.int8.quantize_crop_net`) when `use_int8`, `device` is the
    CPU with the x86 engine and the checkpoint `folder` has an int8 part with ranges measured on these
    weights; `net` as it is otherwise (a warning when the ranges are for other weights). Raises
    Int8Error for an int8 part that is altered or whose ranges do not fit `net`."""
    if not (use_int8 and device.type == "cpu" and has_int8(folder) and int8_supported()):
        return net
    ranges = crop_net_ranges(load_int8(folder), name, sha256)
    if ranges is None:
        return net
    log.info("the %s runs in int8 (models/int8.py)", name)
    return quantize_crop_net(net, name, ranges)
