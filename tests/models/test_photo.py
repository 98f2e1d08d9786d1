"""models.photo: a tinted photo balanced; a narrow-contrast one stretched; then a grainy one smoothed,
else a blurred one sharpened, else read as it is."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from models.balance import BalanceParams, balance_colour, channel_means, colour_cast
from models.focus import TUNED_GATE, FocusParams, blur_measure, sharpen_blurred
from models.grain import GrainParams, grain_sigma, smooth_grain
from models.levels import LevelsParams, luma_spread, stretch_levels
from models.photo import PhotoParams, photo_params, prepare_photo
from models.srgb import to_linear, to_srgb

FOCUS = FocusParams(gate=TUNED_GATE)


def plate() -> np.ndarray:
    pixels = np.full((60, 140, 3), 200, dtype=np.uint8)
    for left in (30, 60, 90):
        pixels[10:50, left : left + 8] = 30
    return pixels


def test_a_clean_sharp_photo_is_read_as_it_is() -> None:
    pixels = plate()
    prepared, steps = prepare_photo(pixels, PhotoParams(GrainParams(), FOCUS, LevelsParams()))
    assert prepared is pixels and steps == ()


def test_a_blurred_photo_is_sharpened() -> None:
    pixels = np.array(Image.fromarray(plate()).filter(ImageFilter.GaussianBlur(2.5)))
    prepared, steps = prepare_photo(pixels, PhotoParams(GrainParams(), FOCUS, LevelsParams()))
    assert steps == ("focus",) and np.array_equal(prepared, sharpen_blurred(pixels, FOCUS))


def test_a_grainy_photo_is_smoothed_and_not_sharpened_back() -> None:
    blurry = np.array(Image.fromarray(plate()).filter(ImageFilter.GaussianBlur(2.5))).astype(float)
    pixels = np.clip(blurry + np.random.default_rng(0).normal(0, 20, blurry.shape), 0, 255).astype(np.uint8)
    assert grain_sigma(pixels) >= GrainParams().threshold
    prepared, steps = prepare_photo(pixels, PhotoParams(GrainParams(), FOCUS, LevelsParams()))
    assert steps == ("grain",) and np.array_equal(prepared, smooth_grain(pixels, GrainParams()))
    assert blur_measure(prepared) >= FOCUS.gate  # sharpening would have fired on the smoothed photo


def test_a_dark_photo_is_stretched_and_its_grain_measured_as_the_stretch_leaves_it() -> None:
    # a plate at dusk: its contrast squeezed to 200 / 8 - 30 / 8 grey levels, with grain of 2 levels,
    # under the smoothing threshold as it is and over it once stretched
    rng = np.random.default_rng(2)
    dark = plate().astype(float) / 8 + rng.normal(0, 2.0, plate().shape)
    pixels = np.clip(np.rint(dark), 0, 255).astype(np.uint8)
    assert grain_sigma(pixels) < GrainParams().threshold
    prepared, steps = prepare_photo(pixels, PhotoParams(GrainParams(), FOCUS, LevelsParams()))
    stretched = stretch_levels(pixels, LevelsParams())
    assert grain_sigma(stretched) >= GrainParams().threshold
    assert steps == ("levels", "grain") and np.array_equal(prepared, smooth_grain(stretched, GrainParams()))
    low, high = luma_spread(prepared)
    assert high - low > 4 * (luma_spread(pixels)[1] - luma_spread(pixels)[0])


def test_a_dark_clean_photo_is_only_stretched() -> None:
    pixels = (plate() // 8).astype(np.uint8)
    prepared, steps = prepare_photo(pixels, PhotoParams(GrainParams(), FOCUS, LevelsParams()))
    assert steps == ("levels",) and np.array_equal(prepared, stretch_levels(pixels, LevelsParams()))


def test_a_photo_under_sodium_light_is_balanced_then_stretched_as_the_balance_leaves_it() -> None:
    # a plate under a street lamp at dusk: blue all but gone and the contrast squeezed
    pixels = to_srgb(to_linear(plate() // 4 + 60) * np.array([1.0, 0.55, 0.15]))
    assert colour_cast(channel_means(pixels)) > 2 * BalanceParams().gate
    prepared, steps = prepare_photo(pixels, PhotoParams(GrainParams(), FOCUS, LevelsParams()))
    balanced = balance_colour(pixels, BalanceParams())
    assert steps == ("balance", "levels")
    assert np.array_equal(prepared, stretch_levels(balanced, LevelsParams()))
    assert not np.array_equal(prepared, stretch_levels(pixels, LevelsParams()))
    assert colour_cast(channel_means(prepared)) < 1.2


def test_with_every_step_off_every_photo_is_read_as_it_is() -> None:
    pixels = (np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8) // 8).astype(np.uint8)
    pixels[..., 2] //= 8  # a tint too
    params = photo_params(0, 0, 0, 0)
    assert not params.on
    prepared, steps = prepare_photo(pixels, params)
    assert prepared is pixels and steps == ()


def test_photo_params_keep_each_modules_default_where_unset() -> None:
    assert photo_params() == (GrainParams(), FocusParams(), LevelsParams(), BalanceParams())
    assert photo_params(levels_gate=40.0).levels == LevelsParams(gate=40.0)
    assert photo_params(balance_gate=5.0).balance == BalanceParams(gate=5.0)
    assert photo_params(balance_gate=0.0).on  # the other steps stay on


def test_the_settings_are_each_steps_by_name() -> None:
    settings = photo_params(levels_gate=40.0).settings()
    assert list(settings) == ["grain", "focus", "levels", "balance"]
    assert settings["levels"] == {"gate": 40.0, "target": 224.0, "max_gain": 8.0}
    assert settings["balance"] == {"gate": 3.0, "full": 2.0, "max_gain": 8.0}
