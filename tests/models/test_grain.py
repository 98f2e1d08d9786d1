"""models.grain: a photo's grain measured, and only grainy photos smoothed."""

from __future__ import annotations

import numpy as np
import pytest

from models.grain import MAX_SIDE, GrainParams, grain_sigma, smooth_grain


def plate(height: int = 60, width: int = 140) -> np.ndarray:
    """uint8 RGB [H, W, 3]: a light plate with a gentle left-to-right shading and three dark bars
    ("111") with sharp edges, no grain."""
    shade = np.linspace(150, 210, width)[None, :, None]
    pixels = np.broadcast_to(shade, (height, width, 3)).copy()
    for left in (30, 60, 90):
        pixels[10:50, left : left + 8] = 30
    return pixels.astype(np.uint8)


def grainy(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """`pixels` with Gaussian grain of `sigma` grey levels per channel, independent per channel."""
    grain = np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return np.clip(np.rint(pixels + grain), 0, 255).astype(np.uint8)


def test_a_clean_plate_has_no_grain_though_its_digits_have_sharp_edges() -> None:
    assert grain_sigma(plate()) < 0.5


@pytest.mark.parametrize("sigma", [6.0, 12.0, 24.0])
def test_the_grain_of_independent_channels_is_measured_in_luma(sigma: float) -> None:
    # luma = 0.299 R + 0.587 G + 0.114 B of independent channels: sigma x sqrt(0.299^2 + 0.587^2 + 0.114^2)
    luma_sigma = sigma * float(np.sqrt(0.299**2 + 0.587**2 + 0.114**2))
    assert grain_sigma(grainy(plate(), sigma)) == pytest.approx(luma_sigma, rel=0.12)


def test_a_photo_under_three_pixels_either_way_measures_no_grain() -> None:
    assert grain_sigma(grainy(plate(2, 50), 30.0)) == 0.0
    assert grain_sigma(grainy(plate(50, 2), 30.0)) == 0.0


def test_a_large_photo_is_measured_in_its_central_window() -> None:
    pixels = np.full((MAX_SIDE * 3, MAX_SIDE * 3, 3), 128, dtype=np.uint8)
    middle = slice(MAX_SIDE, 2 * MAX_SIDE)
    pixels[middle, middle] = grainy(pixels[middle, middle], 20.0)
    assert grain_sigma(pixels) > 10  # the grain is all in the window; a whole-photo median would be 0


def test_the_radius_grows_with_the_grain_from_the_threshold_up_to_the_cap() -> None:
    params = GrainParams(threshold=7.0, per_sigma=0.1, max_radius=1.0)
    assert params.radius(6.9) == 0.0
    assert params.radius(7.0) == pytest.approx(0.7) and params.radius(9.0) == pytest.approx(0.9)
    assert params.radius(40.0) == 1.0
    assert GrainParams(threshold=0.0).radius(40.0) == 0.0  # off


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        GrainParams(threshold=-1.0)


def test_a_clean_photo_is_read_as_it_is_the_very_array() -> None:
    pixels = plate()
    assert smooth_grain(pixels, GrainParams()) is pixels


def test_a_grainy_photo_is_smoothed_into_a_new_writable_array_with_less_grain() -> None:
    pixels = grainy(plate(), 16.0)
    smoothed = smooth_grain(pixels, GrainParams())
    assert smoothed is not pixels and smoothed.shape == pixels.shape and smoothed.dtype == np.uint8
    assert smoothed.flags.writeable
    assert grain_sigma(smoothed) < 0.5 * grain_sigma(pixels)
    # the bars are still there: dark in the middle, light between them
    assert smoothed[30, 34].max() < 90 and smoothed[30, 50].min() > 120


def test_smoothing_off_reads_a_grainy_photo_as_it_is() -> None:
    pixels = grainy(plate(), 16.0)
    assert smooth_grain(pixels, GrainParams(threshold=0.0)) is pixels
