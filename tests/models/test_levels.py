"""models.levels: photos of narrow contrast stretched, the others read as they are."""

from __future__ import annotations

import numpy as np
import pytest

from models.grain import MAX_SIDE
from models.levels import LevelsParams, luma_spread, stretch_levels


def ramp(low: int, high: int, shape: tuple[int, int] = (20, 101)) -> np.ndarray:
    """A grey ramp from `low` to `high` across its width, [H, W, 3] uint8: its luma spread is about
    0.98 x (high - low)."""
    row = np.linspace(low, high, shape[1])
    return np.repeat(np.rint(row)[None, :, None], 3, axis=2).repeat(shape[0], axis=0).astype(np.uint8)


def spread(pixels: np.ndarray) -> float:
    low, high = luma_spread(pixels)
    return high - low


def test_the_spread_runs_from_the_1st_to_the_99th_percentile_of_the_luma() -> None:
    pixels = ramp(0, 100)
    assert luma_spread(pixels) == pytest.approx((1.0, 99.0), abs=0.01)
    # specks of white on 0.5 % of the pixels move the spread by a grey level, not to 255
    pixels[0, :10] = 255
    assert luma_spread(pixels)[1] == pytest.approx(100.0, abs=0.01)
    # the luma weighs green most: pure green at 100 is luma 58.7
    green = np.zeros((4, 4, 3), dtype=np.uint8)
    green[..., 1] = 100
    assert luma_spread(green) == pytest.approx((58.7, 58.7), abs=0.01)


def test_a_photo_of_ordinary_contrast_is_the_very_array() -> None:
    pixels = ramp(40, 200)
    assert stretch_levels(pixels, LevelsParams()) is pixels


def test_the_gain_stretches_a_narrow_spread_far_and_one_near_the_gate_hardly() -> None:
    params = LevelsParams(gate=96.0, target=224.0, max_gain=8.0)
    assert params.gain(96.0) == 1.0 and params.gain(200.0) == 1.0
    assert params.gain(95.0) == pytest.approx(1.0, abs=0.02)  # continuous at the gate
    assert params.gain(48.0) * 48.0 == pytest.approx(48 + (224 - 48) * 0.5)
    assert params.gain(10.0) == 8.0  # capped: 10 levels would want to become 205
    gains = [params.gain(s) for s in (90.0, 60.0, 30.0, 20.0)]
    assert gains == sorted(gains) and gains[0] > 1.0  # the narrower, the more
    assert LevelsParams(gate=0.0).gain(10.0) == 1.0 and not LevelsParams(gate=0.0).on


def test_a_dark_photo_is_stretched_about_its_middle_and_moved_no_further_than_fits() -> None:
    pixels = ramp(100, 140)  # a dull mid-grey photo: spread ~39, middle 120
    out = stretch_levels(pixels, LevelsParams())
    gain = LevelsParams().gain(spread(pixels))
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    assert spread(out) == pytest.approx(gain * spread(pixels), abs=1.0)
    assert np.mean(luma_spread(out)) == pytest.approx(np.mean(luma_spread(pixels)), abs=1.0)  # middle kept
    dark = ramp(0, 20)  # 20 levels at the bottom: stretched 8 x, its middle moved up from 10 to ~78
    out = stretch_levels(dark, LevelsParams())
    low, high = luma_spread(out)
    assert high - low == pytest.approx(8 * spread(dark), abs=1.0) and low == pytest.approx(0.0, abs=1.5)


def test_every_channel_gets_the_same_gain_so_hues_stay() -> None:
    pixels = np.zeros((10, 50, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(60, 120, 50)  # a dull red ramp with some green: luma spread ~41
    pixels[..., 1] = np.linspace(40, 80, 50)
    out = stretch_levels(pixels, LevelsParams()).astype(float)
    red, green = out[..., 0], out[..., 1]
    assert np.ptp(red) > 2 * 60 and green.min() > 0 and red.max() < 255  # stretched, nothing clipped
    assert np.ptp(red) / np.ptp(green) == pytest.approx(60 / 40, rel=0.05)


def test_a_flat_photo_is_the_very_array() -> None:
    pixels = np.full((20, 20, 3), 77, dtype=np.uint8)
    assert stretch_levels(pixels, LevelsParams()) is pixels
    pixels[0, 0] = 0  # one speck in 400 pixels: still flat between the percentiles
    assert stretch_levels(pixels, LevelsParams()) is pixels


def test_a_large_photo_is_measured_in_its_central_window() -> None:
    # a dark frame around a window of ordinary contrast: measured in the window, left alone
    pixels = np.zeros((MAX_SIDE + 400, MAX_SIDE + 400, 3), dtype=np.uint8)
    pixels[200:-200, 200:-200] = ramp(30, 230, (MAX_SIDE, MAX_SIDE))
    assert stretch_levels(pixels, LevelsParams()) is pixels


@pytest.mark.parametrize(
    "settings", [{"gate": -1.0}, {"gate": 256.0}, {"target": 0.0}, {"target": 300.0}, {"max_gain": 0.5}]
)
def test_settings_out_of_range_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="levels settings"):
        LevelsParams(**settings)
