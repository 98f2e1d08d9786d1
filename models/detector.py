"""`build_detector`: the one place a digit detector is built, for training, evaluation and serving.

It never loads or downloads weights: torchvision builders get no weights, and the checkpoint module
fills the parameters afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import initLevelMapper

from models.labels import NUM_CLASSES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DetectorConfig:
    """Plain, JSON-serialisable arguments that fully determine the architecture.

    `min_size`/`max_size` are the input size: the shorter image side is resized to `min_size` unless the
    longer would exceed `max_size`. With `train_min_sizes` (multi-scale training) each training image's
    shorter side is drawn at random from `train_min_sizes` + (`min_size`,), or, with
    `train_scale_per_batch`, one size is drawn per batch so that no image is padded up to a larger
    neighbour's size; evaluation and serving always use `min_size`. Anchor sizes are in pixels of that
    resized image and are used on every FPN level; `aspect_ratios` are height / width. Images are
    normalised inside the model with `image_mean`/`image_std` (ImageNet), so inputs are float RGB in
    [0, 1]. `box_fg_iou_thresh` / `box_bg_iou_thresh` steer training only: a region proposal is a
    positive for the box head when its IoU with a labelled box is >= the first, background when under
    the second, and left out of the box head's loss in between (torchvision's `Matcher`); both 0.5 in
    torchvision and the seed.
    """

    arch: str = "fasterrcnn_resnet50_fpn_v2"
    num_classes: int = NUM_CLASSES
    min_size: int = 64
    max_size: int = 256
    train_min_sizes: tuple[int, ...] = ()
    train_scale_per_batch: bool = False
    anchor_sizes: tuple[int, ...] = (8, 16, 32)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fpn_channels: int = 256
    box_head_dim: int = 1024
    trainable_backbone_layers: int = 5
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    image_mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    image_std: tuple[float, ...] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        if self.arch not in BACKBONES:
            raise ValueError(f"unknown arch {self.arch!r}; supported: {sorted(BACKBONES)}")
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not all(0 < size <= self.max_size for size in self.train_min_sizes):
            raise ValueError(f"train_min_sizes must lie in 1..max_size, got {self.train_min_sizes}")
        if not 0 < self.box_bg_iou_thresh <= self.box_fg_iou_thresh < 1:
            raise ValueError(
                "need 0 < box_bg_iou_thresh <= box_fg_iou_thresh < 1, got "
                f"{self.box_bg_iou_thresh}, {self.box_fg_iou_thresh}"
            )
        if not 0 <= self.trainable_backbone_layers <= 5:
            raise ValueError("trainable_backbone_layers must be in 0..5")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """Inverse of `to_dict`; JSON lists become tuples, unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown detector arguments: {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


def _resnet_fpn(depth: Callable[..., resnet.ResNet], config: DetectorConfig) -> BackboneWithFPN:
    """ResNet body + FPN (P2-P6) with trainable BatchNorm everywhere (the torchvision "v2" style)."""
    body = depth(weights=None, norm_layer=nn.BatchNorm2d)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][: config.trainable_backbone_layers]
    if config.trainable_backbone_layers == 5:
        trainable.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in trainable):
            parameter.requires_grad_(False)
    stage2_channels = body.inplanes // 8
    return BackboneWithFPN(
        body,
        return_layers={f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)},
        in_channels_list=[stage2_channels * 2 ** (k - 1) for k in (1, 2, 3, 4)],
        out_channels=config.fpn_channels,
        norm_layer=nn.BatchNorm2d,
    )


# Explicit registry of supported architectures: arch name -> backbone builder.
BACKBONES: dict[str, Callable[[DetectorConfig], BackboneWithFPN]] = {
    "fasterrcnn_resnet50_fpn_v2": lambda c: _resnet_fpn(resnet.resnet50, c),
    "fasterrcnn_resnet34_fpn": lambda c: _resnet_fpn(resnet.resnet34, c),
    "fasterrcnn_resnet18_fpn": lambda c: _resnet_fpn(resnet.resnet18, c),
}

NUM_FPN_LEVELS = 5  # P2..P5 from the ResNet stages plus the max-pooled P6
# The strides of the maps "0"-"3" (P2-P5) that the box head pools from: layer1-layer4 of a ResNet
POOLED_STRIDES = (4, 8, 16, 32)


def fix_pooler_scales(pooler: MultiScaleRoIAlign) -> None:
    """Set the box pooler's map scales (1 / `POOLED_STRIDES`) and level rule now, instead of on its
    first call. torchvision's `MultiScaleRoIAlign` infers them from the first batch it sees, from each
    map's height over the largest image's unpadded height, and keeps them: a first image resized to
    under ~0.7 of its padded height (a 41 x 238 photo is shrunk to 66 x 384 by max_size and padded to
    96 x 384) rounds stride 4 to 2 and spoils every reading after it (pytorch/vision#3747;
    experiment 153)."""
    pooler.scales = [1.0 / stride for stride in POOLED_STRIDES]
    pooler.map_levels = initLevelMapper(
        round(math.log2(POOLED_STRIDES[0])),
        round(math.log2(POOLED_STRIDES[-1])),
        canonical_scale=pooler.canonical_scale,
        canonical_level=pooler.canonical_level,
    )


class PerBatchScaleTransform(GeneralizedRCNNTransform):
    """torchvision's resize-normalise-pad transform, drawing one training size per batch.

    torchvision draws a shorter-side size from `min_size` for every image, then pads the batch to its
    largest image, so one large draw makes the whole batch large. Here the draw is made once per
    `forward` call and used for all its images. Evaluation is unchanged (`min_size[-1]`).
    """

    _batch_min_size: int | None = None  # the shorter side drawn for the current batch

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, torch.Tensor]] | None]:
        self._batch_min_size = super().torch_choice(list(self.min_size)) if self.training else None
        try:
            return super().forward(images, targets)
        finally:
            self._batch_min_size = None

    def torch_choice(self, k: list[int]) -> int:
        return self._batch_min_size if self._batch_min_size is not None else super().torch_choice(k)


def build_detector(config: DetectorConfig) -> FasterRCNN:
    """Build an untrained Faster R-CNN for `config`.

    The model takes a list of float tensors [3, H, W] in [0, 1] (any H, W). In training mode it also
    takes targets `{"boxes": FloatTensor[N, 4] xyxy in input pixels, "labels": Int64Tensor[N]}` and
    returns a dict of losses; in eval mode it returns per image `{"boxes": FloatTensor[K, 4] xyxy in
    input pixels, "labels": Int64Tensor[K] (digit + 1), "scores": FloatTensor[K]}`.
    """
    backbone = BACKBONES[config.arch](config)
    anchors = AnchorGenerator(
        sizes=(tuple(config.anchor_sizes),) * NUM_FPN_LEVELS,
        aspect_ratios=(tuple(config.aspect_ratios),) * NUM_FPN_LEVELS,
    )
    rpn_head = RPNHead(config.fpn_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    box_head = TwoMLPHead(config.fpn_channels * 7 * 7, config.box_head_dim)
    model = FasterRCNN(
        backbone,
        num_classes=None,  # given by box_predictor
        # torchvision draws a training size from the tuple and evaluates at its last entry
        min_size=(*config.train_min_sizes, config.min_size),
        max_size=config.max_size,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=config.rpn_batch_size_per_image,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(config.box_head_dim, config.num_classes),
        box_batch_size_per_image=config.box_batch_size_per_image,
        box_fg_iou_thresh=config.box_fg_iou_thresh,
        box_bg_iou_thresh=config.box_bg_iou_thresh,
        box_score_thresh=config.box_score_thresh,
        box_nms_thresh=config.box_nms_thresh,
        box_detections_per_img=config.box_detections_per_img,
    )
    fix_pooler_scales(model.roi_heads.box_roi_pool)
    if config.train_scale_per_batch:
        model.transform = PerBatchScaleTransform(
            model.transform.min_size, config.max_size, list(config.image_mean), list(config.image_std)
        )
    return model


# Named architecture presets. "seed" is the reference recipe; "fast" is sized for a 2-core CPU:
# ResNet-18 + a narrower FPN, a 2 x 256 box head, anchors shaped like digits (height/width 1-3) and
# RPN/ROI sampling sized for images that hold a handful of digits.
DETECTOR_PRESETS: dict[str, DetectorConfig] = {
    "seed": DetectorConfig(),
    "fast": DetectorConfig(
        arch="fasterrcnn_resnet18_fpn",
        min_size=64,
        max_size=256,
        anchor_sizes=(12, 24, 40),
        aspect_ratios=(1.0, 2.0, 3.0),
        fpn_channels=128,
        box_head_dim=256,
        rpn_pre_nms_top_n_train=600,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_train=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=128,
        box_detections_per_img=20,
    ),
}
