"""models.focus: how blurred a photo is, and only blurred photos sharpened."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from models.focus import TUNED_GATE, FocusParams, blur_measure, sharpen_blurred
from models.grain import MAX_SIDE
from training.scenes import place_in_scene


def plate(height: int = 60, width: int = 140) -> np.ndarray:
    """uint8 RGB [H, W, 3]: a light plate with three dark bars ("111") with sharp edges."""
    pixels = np.full((height, width, 3), 200, dtype=np.uint8)
    for left in (30, 60, 90):
        pixels[10:50, left : left + 8] = 30
    return pixels


def blurred(pixels: np.ndarray, radius: float) -> np.ndarray:
    return np.array(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius)))


def reference_measure(pixels: np.ndarray) -> float:
    """Crete-Roffet's measure written the slow, plain way: a 9-tap box by np.convolve, row by row."""
    g = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    out = []
    for axis in (0, 1):
        box = np.apply_along_axis(lambda v: np.convolve(v, np.ones(9) / 9, mode="same"), axis, g)
        d_photo, d_box = np.abs(np.diff(g, axis=axis)), np.abs(np.diff(box, axis=axis))
        out.append((d_photo.sum() - np.maximum(0, d_photo - d_box).sum()) / d_photo.sum())
    return max(out)


@pytest.mark.parametrize("radius", [0.0, 1.0, 2.5])
def test_the_measure_is_crete_roffet_s(radius: float) -> None:
    pixels = plate() if radius == 0 else blurred(plate(), radius)
    assert blur_measure(pixels) == pytest.approx(reference_measure(pixels), abs=1e-9)


def test_the_more_blurred_the_larger_the_measure() -> None:
    measures = [blur_measure(plate() if r == 0 else blurred(plate(), r)) for r in (0.0, 1.0, 2.0, 3.0)]
    assert measures == sorted(measures) and measures[0] < measures[-1]
    assert measures[0] >= 0 and measures[-1] <= 1


def test_a_flat_or_tiny_photo_measures_nothing_to_sharpen() -> None:
    assert blur_measure(np.full((20, 20, 3), 90, dtype=np.uint8)) == 0.0
    assert blur_measure(plate(1, 50)) == 0.0


def test_a_large_photo_is_measured_in_its_central_window() -> None:
    pixels = np.full((MAX_SIDE * 3, MAX_SIDE * 3, 3), 200, dtype=np.uint8)
    pixels[:, ::4] = 30  # sharp stripes everywhere but the centre, where the stripes are blurred
    middle = slice(MAX_SIDE, 2 * MAX_SIDE)
    pixels[middle, middle] = blurred(pixels[middle, middle], 3.0)
    assert blur_measure(pixels) == pytest.approx(blur_measure(pixels[middle, middle]))


def test_a_sharp_photo_is_read_as_it_is_the_very_array() -> None:
    pixels = plate()
    assert blur_measure(pixels) < FocusParams(gate=TUNED_GATE).gate
    assert sharpen_blurred(pixels, FocusParams(gate=TUNED_GATE)) is pixels


def test_a_blurred_photo_is_sharpened_into_a_new_writable_array_with_steeper_edges() -> None:
    pixels = blurred(plate(), 2.5)
    assert blur_measure(pixels) >= FocusParams(gate=TUNED_GATE).gate
    sharpened = sharpen_blurred(pixels, FocusParams(gate=TUNED_GATE))
    assert sharpened is not pixels and sharpened.shape == pixels.shape and sharpened.flags.writeable
    assert blur_measure(sharpened) < blur_measure(pixels)
    edge = np.abs(np.diff(sharpened[30, 20:45, 0].astype(int))).max()
    assert edge > np.abs(np.diff(pixels[30, 20:45, 0].astype(int))).max()


def test_sharpening_is_off_by_default_and_then_reads_a_blurred_photo_as_it_is() -> None:
    pixels = blurred(plate(), 2.5)
    assert not FocusParams().on
    assert sharpen_blurred(pixels, FocusParams()) is pixels
    assert sharpen_blurred(pixels, FocusParams(gate=0.0)) is pixels


@pytest.mark.parametrize("settings", [{"gate": 1.5}, {"gate": -0.1}, {"radius": -1.0}, {"percent": -5}])
def test_settings_out_of_range_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FocusParams(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sharp_number_in_a_smooth_scene_measures_as_blurred(seed: int) -> None:
    # why sharpening is off by default: the measure cannot tell a smooth backdrop (here the benchmark
    # scenes' colour noise, 3 x the plate's size) from a blurred photo
    scene, _ = place_in_scene(Image.fromarray(plate()), 3, random.Random(seed))
    assert blur_measure(plate()) < TUNED_GATE <= blur_measure(np.array(scene))
