"""What the card's example pictures share: detections drawn over an image (`zoom_examples.py`,
`search_examples.py`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from models.assembly import Detection


def draw_detections(
    ax: Axes, pixels: np.ndarray, found: Sequence[Detection], threshold: float, title: str
) -> None:
    """`pixels` (uint8 RGB [H, W, 3]) with every detection of `found` scoring at least `threshold`
    as a green box (xyxy, those pixels) labelled with its digit, under `title`."""
    ax.imshow(pixels)
    for d in found:
        if d.score >= threshold:
            x1, y1, x2, y2 = d.box_xyxy
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1.5))
            ax.text(x1, y1, str(d.digit), color="lime", fontsize=9, va="bottom")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def outline(ax: Axes, box: tuple[int, int, int, int], color: str, style: str) -> None:
    """A rectangle `box` (x1, y1, x2, y2 pixels) drawn unfilled in `color` and line `style`."""
    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, linestyle=style, linewidth=1))
