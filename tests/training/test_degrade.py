"""training.degrade: photos made worse by JPEG, distance, blur, grain, smear, exposure, shadow, haze,
street light and an angle of view."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.degrade import (
    KINDS,
    VEIL,
    below,
    blur,
    bright,
    dark,
    degrade,
    haze,
    jpeg,
    motion,
    noise,
    oblique,
    shadow,
    shadow_across,
    shrink,
    sodium,
)


def photo() -> Image.Image:
    """A 40 x 16 photo: a dark vertical bar (a "1") with sharp edges on a light ground."""
    pixels = np.full((16, 40, 3), 200, dtype=np.uint8)
    pixels[2:14, 18:22] = 20
    return Image.fromarray(pixels)


def error(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two photos of one size, in grey levels."""
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_level_that_leaves_a_photo_as_it_is_returns_it_pixel_for_pixel(kind: str) -> None:
    unchanged = KINDS[kind][1]
    assert np.array_equal(np.asarray(degrade(photo(), kind, unchanged)), np.asarray(photo()))


def test_a_lower_jpeg_quality_loses_more_of_the_photo() -> None:
    errors = [error(jpeg(photo(), q), photo()) for q in (95, 50, 10)]
    assert jpeg(photo(), 50).size == (40, 16) and jpeg(photo(), 50).mode == "RGB"
    assert 0 < errors[0] < errors[1] < errors[2]


def test_shrink_scales_both_sides_and_keeps_at_least_a_pixel() -> None:
    assert shrink(photo(), 0.5).size == (20, 8)
    assert shrink(photo(), 0.3).size == (12, 5)  # 4.8 rounds to 5
    assert shrink(photo(), 0.01).size == (1, 1)
    # the bar is still there, dark in the middle column
    assert np.asarray(shrink(photo(), 0.5))[4, 10].max() < 100


def test_blur_spreads_an_edge_more_the_wider_it_is() -> None:
    edge = [np.asarray(blur(photo(), r))[8, 17, 0] for r in (0.0, 0.5, 1.5)]  # the ground next to the bar
    assert edge[0] == 200 and edge[0] > edge[1] > edge[2]


def test_noise_has_the_asked_spread_and_the_same_seed_gives_the_same_grain() -> None:
    grey = Image.fromarray(np.full((100, 100, 3), 128, dtype=np.uint8))
    grained = np.asarray(noise(grey, 10.0, seed=3), dtype=np.float64)
    assert grained.std() == pytest.approx(10.0, rel=0.05) and grained.mean() == pytest.approx(128, abs=0.5)
    assert np.array_equal(np.asarray(noise(grey, 10.0, seed=3)), np.asarray(noise(grey, 10.0, seed=3)))
    assert not np.array_equal(np.asarray(noise(grey, 10.0, seed=3)), np.asarray(noise(grey, 10.0, seed=4)))


def test_noise_is_clipped_to_the_grey_levels() -> None:
    white = Image.fromarray(np.full((50, 50, 3), 250, dtype=np.uint8))
    grained = np.asarray(noise(white, 40.0, seed=0))
    assert grained.max() == 255 and (grained == 255).mean() > 0.3  # half the draws exceed 5 grey levels


def test_one_stop_darker_halves_the_light_not_the_grey_level() -> None:
    # sRGB 200 is 0.578 of full light; half of that is sRGB 146, not 100 (the transfer curve is not linear)
    pixels = np.asarray(dark(photo(), 1.0))
    assert pixels[0, 0].tolist() == [146, 146, 146] and pixels[8, 20].tolist() == [11, 11, 11]
    darker = [np.asarray(dark(photo(), s))[0, 0, 0] for s in (1.0, 2.0, 4.0)]
    assert darker[0] > darker[1] > darker[2] > 0


def test_overexposure_burns_light_surfaces_out_and_lifts_dark_ones() -> None:
    pixels = np.asarray(bright(photo(), 1.0))
    assert pixels[0, 0].tolist() == [255, 255, 255]  # 0.578 of full light doubled is past white
    assert pixels[8, 20].tolist() == [31, 31, 31]  # the bar lifts from sRGB 20 to 31
    # a stop up then a stop down gives back the bar, which did not clip, to within a grey level
    assert abs(int(np.asarray(dark(bright(photo(), 1.0), 1.0))[8, 20, 0]) - 20) <= 1


def test_haze_mixes_each_pixel_with_the_veil_and_shrinks_the_contrast_by_its_share() -> None:
    veiled = np.asarray(haze(photo(), 0.75), dtype=np.float64)
    assert veiled[0, 0].tolist() == [round(200 / 4 + v * 3 / 4) for v in VEIL]
    assert veiled[0, 0, 0] - veiled[8, 20, 0] == pytest.approx((200 - 20) / 4, abs=1)


def test_sodium_light_scales_each_channels_light_keeping_red_and_leaving_little_blue() -> None:
    # sRGB 200 is 0.578 of full light: green keeps 0.55 of it (sRGB 153), blue 0.15 (sRGB 83)
    lit = np.asarray(sodium(photo(), 1.0))
    assert lit[0, 0].tolist() == [200, 153, 83] and lit[8, 20].tolist() == [20, 12, 3]
    # half the share twice is the whole share: the gains are powers of `SODIUM`
    assert np.array_equal(np.asarray(sodium(sodium(photo(), 0.5), 0.5)), lit)
    half = np.asarray(sodium(photo(), 0.5))[0, 0]
    assert half[0] == 200 and 153 < half[1] < 200 and 83 < half[2] < half[1]


def test_motion_blur_averages_along_each_row_only() -> None:
    smeared = np.asarray(motion(photo(), 4), dtype=np.float64)
    # the 4 px bar (18-21) smeared over 4 px: full at its centre, a ramp of 45 levels a px either side
    assert smeared[8, 14:26, 0].tolist() == [200, 200, 200, 155, 110, 65, 20, 65, 110, 155, 200, 200]
    # nothing moves between rows: the rows above the bar stay the ground
    assert (smeared[0:2] == 200).all() and np.array_equal(smeared[2], smeared[13])
    assert np.array_equal(np.asarray(motion(photo(), 1)), np.asarray(photo()))


def test_a_shadow_darkens_the_left_of_a_slanted_edge_through_the_centre() -> None:
    shaded = np.asarray(shadow(photo(), 1.0))
    # one stop: sRGB 200 -> 146 as in `dark`; the edge at 40 % of the width at the top, 60 % at the bottom
    assert shaded[0, :, 0].tolist() == [146] * 16 + [200] * 24
    assert shaded[15, :, 0].tolist() == [146] * 24 + [200] * 16
    assert shaded[8, 18, 0] == 11 and shaded[8, 21, 0] == 20  # the bar, shaded left of the edge (as `dark`)


def test_a_shadow_across_any_line_darkens_the_side_asked() -> None:
    assert np.array_equal(np.asarray(shadow_across(photo(), 1.0, 0.4, 0.6)), np.asarray(shadow(photo(), 1.0)))
    right = np.asarray(shadow_across(photo(), 1.0, 0.25, 0.25, left=False))  # upright, at x = 10
    assert right[0, :, 0].tolist() == [200] * 10 + [146] * 30
    assert right[8, 18, 0] == 11  # the bar is right of it
    outside = np.asarray(shadow_across(photo(), 2.0, -0.5, 1.5))  # leaves at the top, cuts the bottom rows
    assert (outside[0, :, 0] == 200).all() and outside[15, 0, 0] < 146
    assert np.array_equal(np.asarray(shadow_across(photo(), 0.0, 0.2, 0.8)), np.asarray(photo()))
    with pytest.raises(ValueError, match="stops"):
        shadow_across(photo(), -1.0, 0.4, 0.6)


def rimmed() -> Image.Image:
    """`photo()` inside a 1 px rim of 90 grey, so that the bare corners of a view (the rim's colour) are
    told from the plate's own 200 grey."""
    return Image.fromarray(np.pad(np.asarray(photo()), ((1, 1), (1, 1), (0, 0)), constant_values=90))


def test_an_oblique_view_turns_the_far_side_away_by_the_seeds_parity() -> None:
    even, odd = np.asarray(oblique(rimmed(), 50, seed=4)), np.asarray(oblique(rimmed(), 50, seed=7))
    assert even.shape == odd.shape and even.shape[1] < rimmed().width
    bare_even, bare_odd = np.all(even == 90, axis=2), np.all(odd == 90, axis=2)
    # bare corners are taller on the far side: the right for an even seed, the left for an odd one
    assert bare_even[:, -1].sum() > bare_even[:, 0].sum() and bare_odd[:, 0].sum() > bare_odd[:, -1].sum()
    assert np.array_equal(even, odd[:, ::-1])  # the photo is mirror-symmetric, so the two views mirror


def test_a_view_from_below_narrows_the_top() -> None:
    seen = np.asarray(below(rimmed(), 40))
    bare = np.all(seen == 90, axis=2)
    assert seen.shape[1] > rimmed().width  # the bottom edge came nearer: wider than it was
    # the top edge went away: its row is bare at both ends, the bottom row (bar the rim) is not
    assert bare[0, :3].all() and bare[0, -3:].all() and not bare[-3, 3:-3].any()
    assert seen.shape[0] < rimmed().height  # and the whole plate, turned away, looks shorter


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        ("oblique", 80.0),
        ("oblique", -5.0),
        ("below", 76.0),
        ("jpeg", 0.0),
        ("jpeg", 99.0),
        ("shrink", 0.0),
        ("shrink", 1.5),
        ("blur", -1.0),
        ("noise", -2.0),
        ("dark", -1.0),
        ("bright", -0.5),
        ("haze", 1.0),
        ("haze", -0.1),
        ("sodium", 1.5),
        ("sodium", -0.1),
        ("motion", 2.5),
        ("motion", -1.0),
        ("shadow", -1.0),
    ],
)
def test_a_level_out_of_range_is_refused(kind: str, level: float) -> None:
    with pytest.raises(ValueError):
        degrade(photo(), kind, level)


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown kind 'fog'"):
        degrade(photo(), "fog", 1.0)
