"""Helpers every model user shares: choosing the device, turning stored pixels into the detector's input
and its raw outputs into Detections."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from models.assembly import Detection
from models.labels import label_to_digit


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; an explicit `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but no CUDA GPU is available")
    return torch.device(name)


def to_unit_float(image: torch.Tensor) -> torch.Tensor:
    """RGB ByteTensor[3, H, W] (0-255) -> FloatTensor[3, H, W] in [0, 1]: the one conversion that
    training, evaluation and the service share, so that they feed the models bit for bit the same
    input (x * (1/255); dividing by 255 instead differs in the last bit, enough to flip the int8
    detector's answer on an unstable image: validation image 1236 read 56 against 6)."""
    return F.to_dtype(image, torch.float32, scale=True)


def outputs_to_detections(output: dict[str, torch.Tensor]) -> list[Detection]:
    """One image's model output {boxes FloatTensor[K, 4] xyxy in original-image pixels, labels
    Int64Tensor[K] (digit + 1), scores FloatTensor[K]} -> Detections."""
    boxes = output["boxes"].float().cpu().tolist()
    labels = output["labels"].cpu().tolist()
    scores = output["scores"].float().cpu().tolist()
    return [
        Detection(box_xyxy=(b[0], b[1], b[2], b[3]), digit=label_to_digit(int(lab)), score=s)
        for b, lab, s in zip(boxes, labels, scores, strict=True)
    ]
