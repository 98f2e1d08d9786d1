"""Box-aware training augmentation (the seed recipe). Every transform maps (image, target) -> (image, target).

Images are float RGB [3, H, W] in [0, 1] and stay un-normalised: the detector normalises with ImageNet
mean/std inside its own transform, so normalising here would do it twice. Random erasing therefore fills
with the ImageNet mean, which is exactly 0 after the model's normalisation. No flips: a mirrored digit is
not a digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from models.detector import IMAGENET_MEAN
from training.data import Target


@dataclass(frozen=True)
class AugmentConfig:
    """Seed values: ColorJitter(0.3, 0.3, 0.2), RandomAffine(2 deg, 2 % shift), RandomErasing(p 0.5)."""

    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2
    affine_degrees: float = 2.0
    affine_translate: float = 0.02
    erasing_p: float = 0.5


class TrainTransforms:
    """Photometric jitter, an affine warp that moves the boxes with the pixels, then random erasing.

    Boxes that leave the image are clamped; boxes left with no area are dropped with their labels.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        c = config or AugmentConfig()
        self.geometry = v2.Compose(
            [
                v2.ColorJitter(brightness=c.brightness, contrast=c.contrast, saturation=c.saturation),
                v2.RandomAffine(
                    degrees=c.affine_degrees,
                    translate=(c.affine_translate, c.affine_translate),
                    fill=list(IMAGENET_MEAN),
                ),
                v2.ClampBoundingBoxes(),
                v2.SanitizeBoundingBoxes(min_size=1.0),
            ]
        )
        # Applied to the image alone: erasing does not move digits, so boxes and labels stay.
        self.erase = v2.RandomErasing(p=c.erasing_p, value=list(IMAGENET_MEAN))

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        boxes = tv_tensors.BoundingBoxes(
            target["boxes"], format="XYXY", canvas_size=(image.shape[-2], image.shape[-1])
        )
        sample = {"image": tv_tensors.Image(image), "boxes": boxes, "labels": target["labels"]}
        out = self.geometry(sample)
        image_out = self.erase(out["image"].as_subclass(torch.Tensor))
        new_target = dict(target)
        new_target["boxes"] = out["boxes"].as_subclass(torch.Tensor).float()
        new_target["labels"] = out["labels"]
        return image_out, new_target
