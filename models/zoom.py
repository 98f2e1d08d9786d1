"""A second look at small numbers: when the digits of the first pass are small at the model's input
scale, crop around them and run the detector again on the crop.

The detector sees every image resized so that its shorter side is `min_size` px (96 for the shipped
model). A number that fills little of its photo then has digits of 20-40 px at that scale, which the
shipped model reads right 0-60 % of the time, against 86 % for digits of 60-100 px (validation
split). Cropping to the number brings its digits to the size the model was trained on. Only the
images that need it pay for the second forward pass (a quarter of the validation split at the shipped
settings).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torchvision.models.detection import FasterRCNN

from models.assembly import Detection
from models.inference import outputs_to_detections

CropXYXY = tuple[int, int, int, int]  # [x1, y1, x2, y2) in whole pixels of the original image


@dataclass(frozen=True)
class ZoomParams:
    """When and how to take the second look. `below_px` 0 turns it off.

    The first pass's detections scoring at least `locate_score` locate the number. If their median
    height, at the model's input scale, is under `below_px`, the crop is their union widened by
    `margin_x` median heights left and right (room for a digit the first pass missed) and `margin_y`
    above and below, clipped to the image. A crop the model would enlarge by less than `min_gain`
    over the whole image is not worth a second pass. The second pass's detections replace the first's.
    """

    below_px: float = 0.0
    locate_score: float = 0.3
    margin_x: float = 1.5
    margin_y: float = 0.3
    min_gain: float = 1.25

    def __post_init__(self) -> None:
        if self.below_px < 0 or self.margin_x < 0 or self.margin_y < 0:
            raise ValueError("below_px, margin_x and margin_y must be >= 0")
        if not 0.0 <= self.locate_score <= 1.0:
            raise ValueError(f"locate_score must be in [0, 1], got {self.locate_score}")
        if self.min_gain < 1.0:
            raise ValueError(f"min_gain must be >= 1, got {self.min_gain}")

    @property
    def enabled(self) -> bool:
        return self.below_px > 0

    def with_trigger(self, below_px: float | None) -> ZoomParams:
        """These settings with another `below_px` (an operator's override); None keeps them."""
        return self if below_px is None else replace(self, below_px=below_px)


def input_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor by which torchvision's GeneralizedRCNNTransform resizes a `height` x `width` image."""
    return min(min_size / min(height, width), max_size / max(height, width))


def zoom_region(
    detections: Sequence[Detection],
    height: int,
    width: int,
    min_size: int,
    max_size: int,
    params: ZoomParams,
) -> CropXYXY | None:
    """The crop for a second pass over a `height` x `width` image, or None when none is needed.

    `detections` are the first pass's, boxes xyxy in original-image pixels; `min_size`/`max_size` are
    the detector's input size.
    """
    located = [d for d in detections if d.score >= params.locate_score]
    if not params.enabled or not located:
        return None
    digit_h = statistics.median(d.box_xyxy[3] - d.box_xyxy[1] for d in located)
    if digit_h * input_scale(height, width, min_size, max_size) >= params.below_px:
        return None
    x1 = max(0, int(min(d.box_xyxy[0] for d in located) - params.margin_x * digit_h))
    y1 = max(0, int(min(d.box_xyxy[1] for d in located) - params.margin_y * digit_h))
    x2 = min(width, int(max(d.box_xyxy[2] for d in located) + params.margin_x * digit_h) + 1)
    y2 = min(height, int(max(d.box_xyxy[3] for d in located) + params.margin_y * digit_h) + 1)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    gain = input_scale(y2 - y1, x2 - x1, min_size, max_size) / input_scale(height, width, min_size, max_size)
    return (x1, y1, x2, y2) if gain >= params.min_gain else None


def shift_detections(detections: Sequence[Detection], dx: float, dy: float) -> list[Detection]:
    """Move boxes found in a crop whose top-left corner is (dx, dy) back into the whole image's pixels."""
    return [
        Detection(
            box_xyxy=(d.box_xyxy[0] + dx, d.box_xyxy[1] + dy, d.box_xyxy[2] + dx, d.box_xyxy[3] + dy),
            digit=d.digit,
            score=d.score,
        )
        for d in detections
    ]


def detect_alone(model: FasterRCNN, image: torch.Tensor) -> list[Detection]:
    """The detector's findings in one image (float RGB FloatTensor[3, H, W] in [0, 1] on the model's
    device), boxes xyxy in its pixels, from a call of its own.

    One image per call, so that an image's answer never depends on what it is batched with: torchvision
    pads every image of a batch to the largest one's size, which changes the features near the right
    and bottom edges of the others, and the int8 box head (models/int8.py) scales its input over the
    whole batch. Batches of 16 read 14 of the 807 validation numbers otherwise than one image at a time
    (model card, experiment 40), and the service, which batches under load, would have answered the
    same photo differently by load. 8 validation images of similar sizes took ~13 % less per image
    batched on 2 CPU cores, but through the service, where sizes vary, throughput did not fall."""
    return outputs_to_detections(model([image])[0])


def detect_with_zoom(
    model: FasterRCNN, images: list[torch.Tensor], params: ZoomParams
) -> list[list[Detection]]:
    """Detections for each of `images` (float RGB FloatTensor[3, H, W] in [0, 1] on the model's device),
    boxes xyxy in that image's pixels: a pass over each image (`detect_alone`), then a second pass over
    the crop of each image that needs one. Call under torch.inference_mode() with the model in eval
    mode."""
    found = [detect_alone(model, image) for image in images]
    if not params.enabled:
        return found
    min_size, max_size = int(model.transform.min_size[-1]), int(model.transform.max_size)
    for i, image in enumerate(images):
        region = zoom_region(found[i], image.shape[-2], image.shape[-1], min_size, max_size, params)
        if region is not None:
            x1, y1, x2, y2 = region
            found[i] = shift_detections(detect_alone(model, image[:, y1:y2, x1:x2]), x1, y1)
    return found
