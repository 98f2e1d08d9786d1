"""Street lessons for training: what the street does to a photo of a house number, drawn for training
photos so that the detector learns to read through it (experiment 160). A plate half in a hard shadow
(a wall's or an awning's), seen from the side of the street or from below, and smeared by a camera
panning past it: the test-time probes of experiments 157 and 159 (`training.degrade`'s `shadow`,
`oblique`, `below` and `motion`), drawn at random here, each with its own probability
(`AugmentConfig.shadow_p`, `view_p`, `smear_p`), in that order (the light falls on the plate, the plate
is seen at an angle, the camera moves).

Only the view moves the digits: each box becomes the box around its four corners as the view turns them
(`training.viewpoint.view_box`), in the pixels of the turned photo, whose size differs from the photo's.
A shadow and a smear leave the boxes as they are (a smear of up to a few pixels runs a stroke sideways by
half that; the label box is the digit's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from training.degrade import motion, shadow_across
from training.viewpoint import seen_from, view_box

if TYPE_CHECKING:  # training.transforms builds a StreetView from its config
    from training.transforms import AugmentConfig


def to_pil(image: torch.Tensor) -> Image.Image:
    """float RGB [3, H, W] in [0, 1] -> an RGB PIL photo (rounded to 8 bits)."""
    pixels = (image * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels)


def from_pil(photo: Image.Image) -> torch.Tensor:
    """An RGB PIL photo -> float RGB [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def view_boxes(boxes: torch.Tensor, size: tuple[int, int], yaw: float, pitch: float) -> torch.Tensor:
    """`boxes` float [N, 4] (xyxy px of a `size` = (width, height) photo) where `seen_from` at that turn
    puts them: each the box around its turned corners, float [N, 4] xyxy in the turned photo's px."""
    moved = [view_box((x1, y1, x2, y2), size, yaw, pitch) for x1, y1, x2, y2 in boxes.tolist()]
    return torch.tensor(moved, dtype=torch.float32).reshape(-1, 4)


class StreetView:
    """Make a training photo (float RGB [3, H, W] in [0, 1], with its boxes float [N, 4] xyxy px) into
    one taken in the street, each way with its own probability: half in a hard shadow
    (`AugmentConfig.shadow_p`: an edge from a random share of the width at the top, 0.2-0.8, to within
    0.3 of it at the bottom, the dark side left or right at random, `shadow_stops` deep), seen at an
    angle (`view_p`: about the upright axis, either side away, or about the level one, from below or
    above, at a turn drawn uniformly from 0 to `view_degrees`; the photo's size changes and the boxes
    move), smeared sideways (`smear_p`: over a whole number of px drawn uniformly from `smear_px`). Draws
    from torch's global generator only for the ways that are on."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    @property
    def on(self) -> bool:
        c = self.config
        return c.shadow_p > 0 or c.view_p > 0 or c.smear_p > 0

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        photo, changed = to_pil(image), False
        if c.shadow_p > 0 and _drawn(c.shadow_p):
            top = _uniform(0.2, 0.8)
            bottom = top + _uniform(-0.3, 0.3)
            photo = shadow_across(photo, _uniform(*c.shadow_stops), top, bottom, left=_drawn(0.5))
            changed = True
        if c.view_p > 0 and _drawn(c.view_p):
            turn = _uniform(0.0, c.view_degrees) * (1.0 if _drawn(0.5) else -1.0)
            yaw, pitch = (turn, 0.0) if _drawn(0.5) else (0.0, turn)
            boxes = view_boxes(boxes, photo.size, yaw, pitch)
            photo = seen_from(photo, yaw, pitch)
            changed = True
        if c.smear_p > 0 and _drawn(c.smear_p):
            low, high = c.smear_px
            photo = motion(photo, int(torch.randint(low, high + 1, ())))
            changed = True
        return (from_pil(photo), boxes) if changed else (image, boxes)


def _drawn(p: float) -> bool:
    return float(torch.rand(())) < p


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))
