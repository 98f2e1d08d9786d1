"""training.turned: photos turned on a grown canvas, and upright photos framed alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from training.turned import frame_alike, mean_colour, signed_turn, turn_photo


def photo() -> Image.Image:
    """A 40 x 16 photo: a dark vertical bar (a "1") on a light ground, one column of red at the left."""
    pixels = np.full((16, 40, 3), 200, dtype=np.uint8)
    pixels[2:14, 18:22] = 20
    pixels[:, 0] = (255, 0, 0)
    return Image.fromarray(pixels)


def test_mean_colour_is_the_rounded_channel_mean() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 10, 1)
    assert mean_colour(Image.fromarray(pixels)) == (64, 2, 0)  # 63.75, 2.5 -> 2 (half to even), 0.25


@pytest.mark.parametrize("degrees", [8.0, -8.0, 30.0])
def test_a_turned_photo_grows_to_hold_all_of_it_and_its_corners_take_the_mean_colour(degrees: float) -> None:
    turned = turn_photo(photo(), degrees)
    rad = math.radians(abs(degrees))
    width = 40 * math.cos(rad) + 16 * math.sin(rad)
    height = 40 * math.sin(rad) + 16 * math.cos(rad)
    assert abs(turned.width - width) <= 2 and abs(turned.height - height) <= 2
    corner = np.asarray(turned)[0, 0] if degrees > 0 else np.asarray(turned)[-1, 0]
    assert tuple(int(v) for v in corner) == mean_colour(photo())


def lean(image: Image.Image) -> float:
    """How far the dark bar's x moves per row down (a least-squares fit over its pixels)."""
    ys, xs = np.nonzero(np.asarray(image).sum(axis=2) < 150)
    return float(np.polyfit(ys, xs, 1)[0])


def test_the_turn_is_counter_clockwise_for_positive_degrees() -> None:
    # the vertical bar, turned counter-clockwise, leans left: its top lies left of its bottom
    assert abs(lean(photo())) < 1e-6
    assert lean(turn_photo(photo(), 20.0)) == pytest.approx(math.tan(math.radians(20.0)), abs=0.1)
    assert lean(turn_photo(photo(), -20.0)) == pytest.approx(-math.tan(math.radians(20.0)), abs=0.1)


def test_no_turn_is_the_photo_itself() -> None:
    assert np.array_equal(np.asarray(turn_photo(photo(), 0.0)), np.asarray(photo()))


def test_framed_alike_is_the_photo_unturned_at_the_centre_of_the_turned_canvas() -> None:
    turned = turn_photo(photo(), 8.0)
    framed = frame_alike(photo(), turned.size)
    assert framed.size == turned.size
    x, y = (framed.width - 40) // 2, (framed.height - 16) // 2
    pixels = np.asarray(framed)
    assert np.array_equal(pixels[y : y + 16, x : x + 40], np.asarray(photo()))
    assert tuple(int(v) for v in pixels[0, 0]) == mean_colour(photo())


def test_a_frame_smaller_than_the_photo_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        frame_alike(photo(), (39, 30))


def test_photos_turn_both_ways_by_their_ids() -> None:
    assert [signed_turn(i, 8.0) for i in (10, 11, 12)] == [8.0, -8.0, 8.0]
