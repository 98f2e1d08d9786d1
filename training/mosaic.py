"""Mosaic augmentation: four training photos in a 2 x 2 grid as one training image.

After the mosaic of YOLOv4 (Bochkovskiy et al. 2020, "YOLOv4: optimal speed and accuracy of object
detection"), a staple of detectors trained from random weights: every mosaic shows four photos' digits
and backgrounds at once, each number off the image's centre and at half the scale of a photo on its own
(the detector resizes the whole mosaic to its input size), as digits are in a photo of a whole house
front. The box-aware augmentation (`TrainTransforms`) runs on the mosaic afterwards, as on any photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import functional as F

from models.detector import IMAGENET_MEAN
from training.data import DigitDataset, ImageRecord, PairTransform, Target


def mosaic(
    images: Sequence[torch.Tensor], targets: Sequence[Target], fill: Sequence[float] = IMAGENET_MEAN
) -> tuple[torch.Tensor, Target]:
    """Four images in a 2 x 2 grid, row by row (0 1 / 2 3), each resized to the first one's height with
    its aspect ratio kept; the canvas is two heights high and as wide as the wider row, the rest of it
    filled with `fill` (RGB in [0, 1]).

    `images`: four FloatTensor[3, H_i, W_i] in [0, 1]. `targets`: theirs, boxes FloatTensor[N_i, 4]
    XYXY in their image's pixels, labels Int64Tensor[N_i]. Returns (FloatTensor[3, 2 H_0, W], the target
    of the first image with every image's boxes, scaled and moved with its pixels, XYXY in the mosaic's
    pixels, and labels, in the order of the images).
    """
    if len(images) != 4 or len(targets) != 4:
        raise ValueError(f"a mosaic takes 4 images and targets, got {len(images)} and {len(targets)}")
    height = images[0].shape[-2]
    tiles: list[torch.Tensor] = []
    scales: list[tuple[float, float]] = []
    for image in images:
        h, w = image.shape[-2:]
        width = max(1, round(w * height / h))
        tiles.append(image if (h, w) == (height, width) else F.resize(image, [height, width], antialias=True))
        scales.append((width / w, height / h))
    widths = [tile.shape[-1] for tile in tiles]
    canvas_width = max(widths[0] + widths[1], widths[2] + widths[3])
    canvas = torch.tensor(list(fill), dtype=images[0].dtype).view(3, 1, 1).repeat(1, 2 * height, canvas_width)
    boxes, labels = [], []
    for i, (tile, target, (sx, sy)) in enumerate(zip(tiles, targets, scales, strict=True)):
        left, top = (widths[i - 1] if i % 2 else 0), (height if i >= 2 else 0)
        canvas[:, top : top + height, left : left + tile.shape[-1]] = tile
        scale = torch.tensor([sx, sy, sx, sy])
        offset = torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes.append(target["boxes"].reshape(-1, 4).float() * scale + offset)
        labels.append(target["labels"])
    out = dict(targets[0])
    out["boxes"] = torch.cat(boxes)
    out["labels"] = torch.cat(labels)
    return canvas, out


class MosaicDataset(DigitDataset):
    """A `DigitDataset` whose item is, with probability `p`, the mosaic of its own photo (top left) and
    three photos drawn at random from the records (with replacement: the photo itself may come again),
    the augmentation applied to the mosaic; otherwise the photo alone, as `DigitDataset` yields it.
    Draws use torch's global generator (seeded for each photo and epoch by
    `training.sampling.KeyedDraws` in training)."""

    def __init__(self, records: Sequence[ImageRecord], transforms: PairTransform | None, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the mosaic probability must lie in [0, 1], got {p}")
        super().__init__(records, transforms)
        self.p = p

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        if self.p == 0.0 or len(self.records) < 2 or float(torch.rand(())) >= self.p:
            return super().__getitem__(index)
        others = torch.randint(len(self.records), (3,)).tolist()
        image, target = mosaic(*zip(*(self.load(i) for i in (index, *others)), strict=True))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
