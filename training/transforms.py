"""Box-aware training augmentation (the seed recipe). Every transform maps (image, target) -> (image, target).

Images are float RGB [3, H, W] in [0, 1] and stay un-normalised: the detector normalises with ImageNet
mean/std inside its own transform, so normalising here would do it twice. Random erasing therefore fills
with the ImageNet mean, which is exactly 0 after the model's normalisation. No flips: a mirrored digit is
not a digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from models.detector import IMAGENET_MEAN
from training import degrade
from training.data import Target
from training.marks import MarkBeside, mark_fonts
from training.street import StreetView, from_pil, to_pil
from training.twins import DigitBeside

AFFINE_BOX_RULES = ("corners", "ellipse", "mean")


@dataclass(frozen=True)
class AugmentConfig:
    """Seed values: ColorJitter(0.3, 0.3, 0.2), RandomAffine(2 deg, 2 % shift), RandomErasing(p 0.5).

    The rest are off in the seed (experiment 48 turns them on): `blur_p` blurs the image (Gaussian,
    sigma drawn from `blur_sigma` in pixels of the original image), `grayscale_p` makes it grey (3
    channels still), and `erasing_drop` > 0 drops a box, with its label, when random erasing covers at
    least that share of its area (a digit that is no longer visible is not a digit; 0 keeps it).
    `stretch` s > 1 resizes the image's width by a factor drawn log-uniformly from [1 / s, s], its
    height kept, boxes with it (digits come condensed and wide; 1 = off, the seed). `affine_shear` a > 0
    slants the affine warp sideways by an angle drawn uniformly from [-a, a] degrees (italic and
    back-slanted digits; each box becomes the box around its slanted corners; 0 = off, the seed).
    `invert_p` inverts the image (1 - x) with that probability: house numbers come dark on light and
    light on dark, and a digit's shape is the same either way (0 = off, the seed). `affine_boxes` says
    where a box goes under the affine warp: "corners", the box around its four warped corners (the
    seed; under rotation and shear it grows wider than the digit: at 5 degrees a digit twice as tall
    as wide gets up to 17 % wider), or "ellipse", the box around its inscribed ellipse warped
    (`ellipse_boxes`; +1 % there), after Kalra et al. 2021, "Towards rotation invariance in object
    detection": glyphs fill their box's middle more than its corners; or "mean", the two boxes'
    coordinates averaged (experiment 90 found the ellipse's boxes too tight for digits). `mosaic_p`
    makes a training image, with that probability, the 2 x 2 mosaic of its photo and three drawn at
    random (`training.mosaic`), these transforms applied to the mosaic (0 = off, the seed). `digit_p`
    copies, with that probability, one of the number's own digits beside it, with its box and label,
    before everything else (`training.twins`: more pairs of like digits side by side, "11"; 0 = off,
    the seed; experiment 145: worse). `mark_p` pastes, with that probability, a letter or mark beside
    the number next, with no box (`training.marks`: "12A", "N°53" are read as background; 0 = off).

    Poor photos (experiment 139; all off in the seed), each with its own probability and in the order a
    camera makes them, after the digit copy and the mark, before everything else: `lowres_p` shrinks
    the photo by a factor drawn log-uniformly from [`lowres_min`, 1] and enlarges it back (a number
    photographed from afar; boxes unchanged), `noise_p` adds Gaussian grain of a standard deviation
    drawn uniformly from `noise_sigma` grey levels (0-255), and `jpeg_p` compresses it as a JPEG of a
    quality drawn uniformly from `jpeg_quality` (1-95, PIL's scale).

    Street lessons (experiment 160; all off in the seed), after the mark and before the poor photo
    (`training.street.StreetView`): `shadow_p` darkens one side of a hard edge across the photo by
    `shadow_stops` drawn uniformly (stops of linear light), `view_p` shows the plate seen from the side
    or from below or above, turned by up to `view_degrees` (0-75; boxes move with it), and `smear_p`
    smears it sideways over a whole number of px drawn from `smear_px`.
    """

    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2
    affine_degrees: float = 2.0
    affine_translate: float = 0.02
    erasing_p: float = 0.5
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    grayscale_p: float = 0.0
    erasing_drop: float = 0.0
    stretch: float = 1.0
    affine_shear: float = 0.0
    invert_p: float = 0.0
    affine_boxes: str = "corners"
    mosaic_p: float = 0.0
    mark_p: float = 0.0
    digit_p: float = 0.0
    lowres_p: float = 0.0
    lowres_min: float = 0.3
    noise_p: float = 0.0
    noise_sigma: tuple[float, float] = (3.0, 24.0)
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (10, 60)
    shadow_p: float = 0.0
    shadow_stops: tuple[float, float] = (0.5, 2.5)
    view_p: float = 0.0
    view_degrees: float = 60.0
    smear_p: float = 0.0
    smear_px: tuple[int, int] = (2, 7)

    def __post_init__(self) -> None:
        if self.affine_boxes not in AFFINE_BOX_RULES:
            raise ValueError(
                f"augment.affine_boxes must be one of {AFFINE_BOX_RULES}, got {self.affine_boxes!r}"
            )
        if self.stretch < 1.0:
            raise ValueError(f"augment.stretch must be >= 1 (1 = off), got {self.stretch}")
        if not 0.0 <= self.affine_shear < 45.0:
            raise ValueError(f"augment.affine_shear must lie in [0, 45) degrees, got {self.affine_shear}")
        for name in (
            "erasing_p",
            "blur_p",
            "grayscale_p",
            "erasing_drop",
            "invert_p",
            "mosaic_p",
            "mark_p",
            "digit_p",
            "lowres_p",
            "noise_p",
            "jpeg_p",
            "shadow_p",
            "view_p",
            "smear_p",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must lie in [0, 1], got {value}")
        low, high = self.blur_sigma
        if not 0.0 < low <= high:
            raise ValueError(
                f"augment.blur_sigma must be (low, high) with 0 < low <= high, got {self.blur_sigma}"
            )
        if not 0.0 < self.lowres_min <= 1.0:
            raise ValueError(f"augment.lowres_min must lie in (0, 1], got {self.lowres_min}")
        low, high = self.noise_sigma
        if not 0.0 <= low <= high:
            raise ValueError(
                f"augment.noise_sigma must be (low, high) with 0 <= low <= high, got {self.noise_sigma}"
            )
        low_q, high_q = self.jpeg_quality
        if not 1 <= low_q <= high_q <= 95:
            raise ValueError(
                "augment.jpeg_quality must be (low, high) with 1 <= low <= high <= 95, "
                f"got {self.jpeg_quality}"
            )
        low, high = self.shadow_stops
        if not 0.0 < low <= high:
            raise ValueError(
                f"augment.shadow_stops must be (low, high) with 0 < low <= high, got {self.shadow_stops}"
            )
        if not 0.0 < self.view_degrees <= 75.0:
            raise ValueError(f"augment.view_degrees must lie in (0, 75], got {self.view_degrees}")
        low_px, high_px = self.smear_px
        if not (low_px == int(low_px) and high_px == int(high_px) and 2 <= low_px <= high_px):
            raise ValueError(
                f"augment.smear_px must be whole (low, high) with 2 <= low <= high, got {self.smear_px}"
            )


class HorizontalStretch(v2.Transform):
    """Resize the width by a factor drawn log-uniformly from [1 / max_factor, max_factor], the height
    kept; boxes (tv_tensors.BoundingBoxes) scale with the pixels."""

    def __init__(self, max_factor: float) -> None:
        super().__init__()
        self.log_max = math.log(max_factor)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        factor = math.exp(float(torch.empty(()).uniform_(-self.log_max, self.log_max)))
        return {"size": [height, max(1, round(width * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(v2.functional.resize, inpt, size=params["size"], antialias=True)


def low_resolution(image: torch.Tensor, factor: float) -> torch.Tensor:
    """`image` (float [3, H, W] in [0, 1]) shrunk to `factor` (0 < factor <= 1) of its height and width
    (rounded, at least 1 px; bilinear with antialiasing) and enlarged back to [3, H, W] (bilinear): the
    detail of a photo taken `1 / factor` times as far, at the same size, so that boxes stay where they are."""
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"a low-resolution factor must lie in (0, 1], got {factor}")
    height, width = image.shape[-2:]
    small = [max(1, round(height * factor)), max(1, round(width * factor))]
    if small == [height, width]:
        return image
    shrunk = v2.functional.resize(image, small, antialias=True)
    return v2.functional.resize(shrunk, [height, width], antialias=False).clamp(0.0, 1.0)


def add_grain(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """`image` (float [3, H, W] in [0, 1]) plus Gaussian grain of standard deviation `sigma` grey levels
    (0-255 scale), drawn from torch's global generator for each pixel and channel, clipped to [0, 1]."""
    if sigma < 0:
        raise ValueError(f"a grain sigma must be >= 0, got {sigma}")
    return (image + torch.randn_like(image) * (sigma / 255.0)).clamp(0.0, 1.0)


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """`image` (float [3, H, W] in [0, 1]) rounded to 8 bits, saved as a JPEG of `quality` (1-95, PIL's
    scale, 4:2:0 chroma; `training.degrade.jpeg`, as bench_quality makes its photos) and read back to
    float [3, H, W] in [0, 1]."""
    return from_pil(degrade.jpeg(to_pil(image), quality))


class PoorPhoto:
    """Make a training photo (float [3, H, W] in [0, 1]) worse the ways a camera does, each way with its
    own probability (`AugmentConfig.lowres_p`, `noise_p`, `jpeg_p`): lower resolution, then grain, then
    JPEG compression. Draws from torch's global generator only for the ways that are on."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    @property
    def on(self) -> bool:
        c = self.config
        return c.lowres_p > 0 or c.noise_p > 0 or c.jpeg_p > 0

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.lowres_p > 0 and float(torch.rand(())) < c.lowres_p:
            log_min = math.log(c.lowres_min)
            image = low_resolution(image, math.exp(float(torch.empty(()).uniform_(log_min, 0.0))))
        if c.noise_p > 0 and float(torch.rand(())) < c.noise_p:
            image = add_grain(image, float(torch.empty(()).uniform_(*c.noise_sigma)))
        if c.jpeg_p > 0 and float(torch.rand(())) < c.jpeg_p:
            low, high = c.jpeg_quality
            image = jpeg_roundtrip(image, int(torch.randint(low, high + 1, ())))
        return image


class TrainTransforms:
    """One of the number's digits copied beside it when configured (`training.twins`, with its box and
    label), a letter or mark beside the number when configured (`training.marks`), the street's shadow,
    view and smear when configured (`training.street`, the boxes moved with the view), a poorer photo when
    configured (`PoorPhoto`: lower resolution, grain, JPEG), photometric jitter (then
    blur, grey and inversion when configured), a horizontal stretch when
    configured, an affine warp that moves the boxes with the pixels (each box becomes the box around its
    warped corners, around its warped inscribed ellipse, or the mean of the two:
    `AugmentConfig.affine_boxes`), then random erasing.

    Boxes that leave the image are clamped; boxes left with no area are dropped with their labels, and
    so are boxes the erasing covers by at least `erasing_drop` of their area when that is > 0.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        c = config or AugmentConfig()
        photometric: list[v2.Transform] = [
            v2.ColorJitter(brightness=c.brightness, contrast=c.contrast, saturation=c.saturation)
        ]
        # Only when on, so that the seed recipe draws exactly the random numbers it always drew.
        if c.blur_p > 0:
            photometric.append(
                v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=c.blur_sigma)], p=c.blur_p)
            )
        if c.grayscale_p > 0:
            photometric.append(v2.RandomGrayscale(p=c.grayscale_p))
        if c.invert_p > 0:
            photometric.append(v2.RandomInvert(p=c.invert_p))
        self.erasing_drop = c.erasing_drop
        self.mark = MarkBeside(c.mark_p, mark_fonts()) if c.mark_p > 0 else None
        self.twin = DigitBeside(c.digit_p) if c.digit_p > 0 else None
        street = StreetView(c)
        self.street = street if street.on else None
        poor = PoorPhoto(c)
        self.poor = poor if poor.on else None
        stretch = [HorizontalStretch(c.stretch)] if c.stretch > 1.0 else []
        self.box_rule = c.affine_boxes
        self.geometry = v2.Compose(
            [
                *photometric,
                *stretch,
                v2.RandomAffine(
                    degrees=c.affine_degrees,
                    translate=(c.affine_translate, c.affine_translate),
                    # None when off: the seed recipe draws no shear, so its random numbers stay as they were.
                    shear=(-c.affine_shear, c.affine_shear) if c.affine_shear > 0 else None,
                    fill=list(IMAGENET_MEAN),
                ),
            ]
        )
        self.sanitize = v2.Compose([v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)])
        # Applied to the image alone: erasing does not move digits, so boxes and labels stay.
        self.erase = v2.RandomErasing(p=c.erasing_p, value=list(IMAGENET_MEAN))

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if self.twin is not None:
            image, copied_boxes, copied_labels = self.twin(
                image, target["boxes"].reshape(-1, 4).float(), target["labels"]
            )
            target = {**target, "boxes": copied_boxes, "labels": copied_labels}
        if self.mark is not None:
            image = self.mark(image, target["boxes"].reshape(-1, 4).float())
        if self.street is not None:
            image, street_boxes = self.street(image, target["boxes"].reshape(-1, 4).float())
            target = {**target, "boxes": street_boxes}
        if self.poor is not None:
            image = self.poor(image)
        boxes = tv_tensors.BoundingBoxes(
            target["boxes"], format="XYXY", canvas_size=(image.shape[-2], image.shape[-1])
        )
        sample = {"image": tv_tensors.Image(image), "boxes": boxes, "labels": target["labels"]}
        if self.box_rule != "corners":
            sample["axes"] = ellipse_points(boxes)
        out = self.geometry(sample)
        if self.box_rule != "corners":
            moved = ellipse_boxes(out.pop("axes"))
            if self.box_rule == "mean":  # with the corners' boxes, which the warp itself moved
                moved = (moved + out["boxes"].as_subclass(torch.Tensor)) / 2
            out["boxes"] = tv_tensors.wrap(moved, like=out["boxes"])
        out = self.sanitize(out)
        image_in = out["image"].as_subclass(torch.Tensor)
        image_out = self.erase(image_in)
        boxes_out = out["boxes"].as_subclass(torch.Tensor).float()
        labels_out = out["labels"]
        # Erasing that did not run hands back its input itself: nothing hidden, nothing to compare.
        if self.erasing_drop > 0 and len(boxes_out) and image_out is not image_in:
            keep = erased_share(image_in != image_out, boxes_out) < self.erasing_drop
            boxes_out, labels_out = boxes_out[keep], labels_out[keep]
        new_target = dict(target)
        new_target["boxes"] = boxes_out
        new_target["labels"] = labels_out
        return image_out, new_target


def erased_share(changed: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The share of each box's pixels that erasing changed.

    `changed`: bool [C, H, W] (or [H, W]), True where a pixel differs after erasing. `boxes`: float
    [N, 4] XYXY in pixels. Returns float [N] in [0, 1], counted over the whole pixels each box covers
    (rounded outwards; a box under one pixel counts the pixel it lies in); 0 for a box outside the image.
    """
    mask = changed.any(dim=0) if changed.dim() == 3 else changed
    height, width = mask.shape
    shares = torch.zeros(len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        left, top = max(math.floor(x1), 0), max(math.floor(y1), 0)
        right = min(max(math.ceil(x2), left + 1), width)
        bottom = min(max(math.ceil(y2), top + 1), height)
        if right > left and bottom > top:
            shares[i] = mask[top:bottom, left:right].float().mean()
    return shares


def ellipse_points(boxes: tv_tensors.BoundingBoxes) -> tv_tensors.KeyPoints:
    """Three points per box (XYXY, pixels; [N, 4]) that fix the ellipse inscribed in it: its centre and
    the ends of its horizontal and vertical half-axes. KeyPoints [3N, 2], box by box, on the boxes'
    canvas, so that the transforms that move the boxes move them too."""
    x1, y1, x2, y2 = boxes.as_subclass(torch.Tensor).float().unbind(-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    points = torch.stack(
        [torch.stack([cx, cy], -1), torch.stack([x2, cy], -1), torch.stack([cx, y2], -1)], dim=1
    )
    return tv_tensors.KeyPoints(points.reshape(-1, 2), canvas_size=boxes.canvas_size)


def ellipse_boxes(points: torch.Tensor) -> torch.Tensor:
    """The box around each warped ellipse: `points` [3N, 2] are `ellipse_points` after an affine map
    (centre c, half-axis ends p, q), so the ellipse is c + cos(t) (p - c) + sin(t) (q - c), whose box
    has half-width sqrt(u_x^2 + v_x^2) and half-height sqrt(u_y^2 + v_y^2) for u = p - c, v = q - c.
    Returns FloatTensor [N, 4], XYXY in the warped image's pixels."""
    c, p, q = points.as_subclass(torch.Tensor).float().reshape(-1, 3, 2).unbind(1)
    u, v = p - c, q - c
    half = torch.sqrt(u * u + v * v)  # [N, 2]: (half-width, half-height)
    return torch.cat([c - half, c + half], dim=-1)
