"""models.photo: a grainy photo smoothed, else a blurred one sharpened, else read as it is."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from models.focus import TUNED_GATE, FocusParams, blur_measure, sharpen_blurred
from models.grain import GrainParams, grain_sigma, smooth_grain
from models.photo import prepare_photo


def plate() -> np.ndarray:
    pixels = np.full((60, 140, 3), 200, dtype=np.uint8)
    for left in (30, 60, 90):
        pixels[10:50, left : left + 8] = 30
    return pixels


def test_a_clean_sharp_photo_is_read_as_it_is() -> None:
    pixels = plate()
    prepared, step = prepare_photo(pixels, GrainParams(), FocusParams(gate=TUNED_GATE))
    assert prepared is pixels and step is None


def test_a_blurred_photo_is_sharpened() -> None:
    pixels = np.array(Image.fromarray(plate()).filter(ImageFilter.GaussianBlur(2.5)))
    prepared, step = prepare_photo(pixels, GrainParams(), FocusParams(gate=TUNED_GATE))
    assert step == "focus" and np.array_equal(prepared, sharpen_blurred(pixels, FocusParams(gate=TUNED_GATE)))


def test_a_grainy_photo_is_smoothed_and_not_sharpened_back() -> None:
    blurry = np.array(Image.fromarray(plate()).filter(ImageFilter.GaussianBlur(2.5))).astype(float)
    pixels = np.clip(blurry + np.random.default_rng(0).normal(0, 20, blurry.shape), 0, 255).astype(np.uint8)
    assert grain_sigma(pixels) >= GrainParams().threshold
    prepared, step = prepare_photo(pixels, GrainParams(), FocusParams(gate=TUNED_GATE))
    assert step == "grain" and np.array_equal(prepared, smooth_grain(pixels, GrainParams()))
    assert (
        blur_measure(prepared) >= FocusParams(gate=TUNED_GATE).gate
    )  # sharpening would have fired on the smoothed photo


def test_with_both_steps_off_every_photo_is_read_as_it_is() -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    assert prepare_photo(pixels, GrainParams(threshold=0), FocusParams(gate=0))[0] is pixels
