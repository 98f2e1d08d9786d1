"""training.scenes: a photo pasted pixel for pixel into a larger, digit-free backdrop."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from training.scenes import place_in_scene, place_in_strip


def photo() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 45, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("factor", [2, 3, 6])
def test_the_photo_lies_unchanged_in_a_scene_factor_times_its_size(factor: int) -> None:
    scene, (x, y) = place_in_scene(photo(), factor, random.Random(factor))
    assert scene.size == (45 * factor, 20 * factor)
    inside = np.asarray(scene)[y : y + 20, x : x + 45]
    assert np.array_equal(inside, np.asarray(photo()))


def test_the_backdrop_is_smooth_and_around_the_photos_colour() -> None:
    scene, (x, y) = place_in_scene(photo(), 6, random.Random(1))
    pixels = np.asarray(scene, dtype=np.float32)
    outside = np.ones(pixels.shape[:2], dtype=bool)
    outside[y : y + 20, x : x + 45] = False
    mean = np.asarray(photo(), dtype=np.float32).mean(axis=(0, 1))
    assert np.abs(pixels[outside].mean(axis=0) - mean).max() < 40
    steps = np.abs(np.diff(pixels, axis=1))[outside[:, 1:] & outside[:, :-1]]
    assert steps.max() < 20  # no edges: neighbouring backdrop pixels differ little


def test_scenes_are_the_same_for_the_same_seed_and_factor_one_is_the_photo() -> None:
    a, corner_a = place_in_scene(photo(), 4, random.Random(7))
    b, corner_b = place_in_scene(photo(), 4, random.Random(7))
    assert corner_a == corner_b and np.array_equal(np.asarray(a), np.asarray(b))
    same, corner = place_in_scene(photo(), 1, random.Random(7))
    assert corner == (0, 0) and np.array_equal(np.asarray(same), np.asarray(photo()))
    with pytest.raises(ValueError, match="factor"):
        place_in_scene(photo(), 0, random.Random(7))


@pytest.mark.parametrize("aspect", [4.0, 12.0, 25.5])
def test_the_photo_lies_unchanged_in_a_strip_as_high_as_it_and_aspect_times_as_wide(aspect: float) -> None:
    strip, (x, y) = place_in_strip(photo(), aspect, random.Random(3))
    assert strip.size == (round(aspect * 20), 20) and y == 0
    assert np.array_equal(np.asarray(strip)[:, x : x + 45], np.asarray(photo()))
    again, corner = place_in_strip(photo(), aspect, random.Random(3))
    assert corner == (x, y) and np.array_equal(np.asarray(again), np.asarray(strip))


def test_a_strip_no_wider_than_the_photo_is_the_photo() -> None:
    same, corner = place_in_strip(photo(), 2.0, random.Random(7))  # 40 px wide: the photo is 45
    assert corner == (0, 0) and np.array_equal(np.asarray(same), np.asarray(photo()))
    with pytest.raises(ValueError, match="aspect"):
        place_in_strip(photo(), 0.0, random.Random(7))
