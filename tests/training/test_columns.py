"""training.columns: a photo's digits stacked one above the other, for bench_columns.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.assembly import is_column, reading_order
from training.columns import cut_window, plate_colour, stack_digits

PLATE = (200, 180, 40)


def photo_of_a_row() -> tuple[Image.Image, list[tuple[float, float, float, float]]]:
    """A 100 x 40 plate with three "digits" side by side: dark blocks of their own shades."""
    pixels = np.full((40, 100, 3), PLATE, dtype=np.uint8)
    boxes = [(10.0, 10.0, 20.0, 30.0), (30.0, 10.0, 42.0, 30.0), (52.0, 10.0, 60.0, 30.0)]
    for shade, (x1, y1, x2, y2) in zip((10, 60, 110), boxes, strict=True):
        pixels[int(y1) : int(y2), int(x1) : int(x2)] = shade
    return Image.fromarray(pixels), boxes


def test_the_cut_window_widens_the_box_outwards_and_stays_in_the_photo() -> None:
    assert cut_window((10, 10, 20, 30), 100, 40, pad=0.1) == (9, 8, 21, 32)
    assert cut_window((1, 1, 20, 39.5), 100, 40, pad=0.5) == (0, 0, 30, 40)


def test_the_plate_colour_is_the_median_of_the_cuts_rims() -> None:
    cut = np.full((10, 8, 3), PLATE, dtype=np.uint8)
    cut[3:7, 3:5] = 0  # the digit, inside the rim
    cut[0, 0] = (255, 255, 255)  # one odd rim pixel
    assert plate_colour([Image.fromarray(cut)]) == PLATE


def test_digits_are_stacked_top_to_bottom_in_the_given_order_with_their_own_pixels() -> None:
    photo, boxes = photo_of_a_row()
    stacked, placed = stack_digits(photo, boxes, pad=0.1, gap=0.25)
    pixels = np.asarray(stacked)
    assert is_column(placed) and reading_order(placed) == [0, 1, 2]
    assert reading_order(boxes) == [0, 1, 2] and not is_column(boxes)
    for shade, (x1, y1, x2, y2), box in zip((10, 60, 110), placed, boxes, strict=True):
        assert (x2 - x1, y2 - y1) == (box[2] - box[0], box[3] - box[1])  # moved, not resized
        assert (pixels[int(y1) : int(y2), int(x1) : int(x2)] == shade).all()
    assert tuple(pixels[0, 0]) == PLATE  # the canvas takes the plate's colour
    # the cuts are 24 high (20 + 2 x 2): gaps of 6 above, between and below; the widest is 16 (12 +
    # 1.2 each side, rounded outwards), so 8 either side of it
    assert stacked.size == (32, 3 * 24 + 4 * 6)
    assert placed[0][1] == 6 + 2 and placed[1][1] == 6 + 24 + 6 + 2


def test_the_canvas_is_widened_to_a_width_or_a_shape() -> None:
    photo, boxes = photo_of_a_row()
    narrow, placed = stack_digits(photo, boxes, pad=0.1, gap=0.25)
    wide, shifted = stack_digits(photo, boxes, pad=0.1, gap=0.25, min_width=40)
    assert wide.size == (40, narrow.height)
    assert [b[0] - a[0] for a, b in zip(placed, shifted, strict=True)] == [4, 4, 4]  # still centred
    shaped, _ = stack_digits(photo, boxes, pad=0.1, gap=0.25, aspect=2.5)
    assert shaped.size == (round(2.5 * narrow.height), narrow.height)


def test_nothing_to_stack_is_refused() -> None:
    photo, _ = photo_of_a_row()
    with pytest.raises(ValueError, match="no digit"):
        stack_digits(photo, [])
    with pytest.raises(ValueError, match="no whole pixel"):
        stack_digits(photo, [(120.0, 10.0, 130.0, 30.0)])
