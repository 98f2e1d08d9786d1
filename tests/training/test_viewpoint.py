"""training.viewpoint: a photo's plate turned about its upright or level axis and photographed again."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.viewpoint import perspective_coeffs, rim_colour, seen_from, view_box, view_points

SIZE = (80, 40)
CORNERS = np.array(
    [(0, 0), (80, 0), (80, 40), (0, 40)], float
)  # top left, top right, bottom right, bottom left


def plate() -> Image.Image:
    """An 80 x 40 grey plate with a 1 px blue rim and a dark vertical bar 8 px wide at its centre."""
    pixels = np.full((40, 80, 3), 180, dtype=np.uint8)
    pixels[[0, -1], :] = pixels[:, [0, -1]] = (0, 0, 255)
    pixels[8:32, 36:44] = 20
    return Image.fromarray(pixels)


def test_no_turn_leaves_every_point_where_it_was() -> None:
    assert np.allclose(view_points(CORNERS, SIZE, 0, 0), CORNERS)


def test_turned_sideways_the_far_side_is_shorter_and_nearer_the_centre_and_the_centre_stays() -> None:
    (tl, tr, br, bl) = view_points(CORNERS, SIZE, 60, 0)
    assert br[1] - tr[1] < 40 < bl[1] - tl[1]  # the right side went away: shorter; the left came nearer
    assert 80 - tr[0] > tl[0] > 0  # both sides move in, the far one more
    assert tl[0] == pytest.approx(bl[0]) and tr[0] == pytest.approx(br[0])  # upright edges stay upright
    assert np.allclose(view_points(np.array([(40.0, 20.0)]), SIZE, 60, 0), [(40, 20)])


def test_the_other_way_mirrors_it() -> None:
    right = view_points(CORNERS, SIZE, 45, 0)
    left = view_points(CORNERS, SIZE, -45, 0)
    assert np.allclose(left[[1, 0, 3, 2], 0], 80 - right[:, 0]) and np.allclose(
        left[[1, 0, 3, 2], 1], right[:, 1]
    )


def test_seen_from_below_the_top_is_narrower_than_the_bottom() -> None:
    (tl, tr, br, bl) = view_points(CORNERS, SIZE, 0, 40)
    assert tr[0] - tl[0] < 80 < br[0] - bl[0]
    assert tl[1] > 0 and tl[1] == pytest.approx(tr[1])


def test_the_coefficients_map_each_output_point_back_to_its_input_point() -> None:
    src = [(0.0, 0.0), (80.0, 0.0), (80.0, 40.0), (0.0, 40.0)]
    dst = [(5.0, -3.0), (70.0, 6.0), (72.0, 30.0), (2.0, 44.0)]
    a, b, c, d, e, f, g, h = perspective_coeffs(src, dst)
    for (x, y), (u, v) in zip(dst, src, strict=True):
        w = g * x + h * y + 1
        assert (a * x + b * y + c) / w == pytest.approx(u, abs=1e-9)
        assert (d * x + e * y + f) / w == pytest.approx(v, abs=1e-9)


def test_a_photo_seen_from_the_side_is_narrower_its_bar_too_and_bare_corners_take_the_rim_colour() -> None:
    seen = seen_from(plate(), 60)
    pixels = np.asarray(seen)
    assert seen.width < 60 and seen.height > 40
    assert tuple(pixels[0, -1]) == (0, 0, 255)  # the far side's top corner was left bare
    dark = (pixels[:, :, 0] < 100) & (pixels[:, :, 2] < 100)
    widths = dark.sum(axis=1)
    assert 2 <= widths.max() < 8  # the bar is about cos(60) = half as wide


@pytest.mark.parametrize(("yaw", "pitch"), [(60, 0), (-45, 0), (0, 40), (30, 20)])
def test_a_box_lands_where_its_pixels_do_in_the_seen_photo(yaw: float, pitch: float) -> None:
    seen = np.asarray(seen_from(plate(), yaw, pitch))
    dark = np.argwhere((seen[:, :, 0] < 100) & (seen[:, :, 2] < 100))  # the bar's pixels, [N, (y, x)]
    x1, y1, x2, y2 = view_box((36, 8, 44, 32), SIZE, yaw, pitch)
    assert x1 - 1 <= dark[:, 1].min() and dark[:, 1].max() + 1 <= x2 + 1
    assert y1 - 1 <= dark[:, 0].min() and dark[:, 0].max() + 1 <= y2 + 1
    # and tightly: the box is no more than a pixel (the bicubic edge) larger than the bar each way
    assert dark[:, 1].min() <= x1 + 1 and x2 - 1 <= dark[:, 1].max() + 1
    assert dark[:, 0].min() <= y1 + 1 and y2 - 1 <= dark[:, 0].max() + 1
    assert view_box((36, 8, 44, 32), SIZE, 0, 0) == (36, 8, 44, 32)


def test_no_turn_returns_the_photo_pixel_for_pixel() -> None:
    assert np.array_equal(np.asarray(seen_from(plate(), 0, 0)), np.asarray(plate()))


def test_the_rim_colour_is_the_median_of_the_outermost_pixels() -> None:
    assert rim_colour(plate()) == (0, 0, 255)


@pytest.mark.parametrize(("yaw", "pitch", "fov"), [(80, 0, 40), (0, -85, 40), (10, 0, 0), (10, 0, 130)])
def test_a_turn_or_view_out_of_range_is_refused(yaw: float, pitch: float, fov: float) -> None:
    with pytest.raises(ValueError):
        view_points(CORNERS, SIZE, yaw, pitch, fov)
