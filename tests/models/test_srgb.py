"""models.srgb: the sRGB transfer curve both ways."""

from __future__ import annotations

import numpy as np
import pytest

from models.srgb import LINEAR, to_linear, to_srgb


def test_the_curve_meets_its_published_points() -> None:
    # IEC 61966-2-1: black and white stay, the linear toe below 0.04045 (grey level ~10.3), and sRGB
    # 188 is ~0.5 of full light (mid-grey 128 only ~0.216)
    assert to_linear(np.array([0, 255])).tolist() == [0.0, 1.0]
    assert to_linear(np.array([10]))[0] == pytest.approx(10 / 255 / 12.92)
    assert to_linear(np.array([188]))[0] == pytest.approx(0.5, abs=0.005)
    assert to_linear(np.array([128]))[0] == pytest.approx(0.216, abs=0.001)


def test_every_grey_level_comes_back_from_its_light() -> None:
    levels = np.arange(256)
    assert np.array_equal(to_srgb(to_linear(levels)), levels.astype(np.uint8))
    assert np.array_equal(LINEAR, to_linear(levels))


def test_light_out_of_range_is_clipped_to_black_and_white() -> None:
    assert to_srgb(np.array([-0.5, 0.0, 1.0, 3.0])).tolist() == [0, 0, 255, 255]
    assert to_srgb(np.array([[0.5]])).shape == (1, 1) and to_srgb(np.array([0.5])).dtype == np.uint8
