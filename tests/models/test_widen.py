"""models.widen: how narrow a photo's digits came out, how far to widen it, the widening, and which
reading to keep."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from models.assembly import Detection
from models.widen import (
    TYPICAL_ASPECT,
    WidenParams,
    check_squat_gate,
    next_factor,
    prefer,
    squeeze,
    widen,
    widen_params,
)
from tests.conftest import real_data


def site(digit: int, width: float, height: float = 40.0, score: float = 0.9, x: float = 0.0) -> Detection:
    """A digit site at x with a box `width` x `height` px."""
    return Detection(box_xyxy=(x, 10.0, x + width, 10.0 + height), digit=digit, score=score)


def test_typical_aspects_are_the_training_labels_medians() -> None:
    root = real_data("svhn-hw2")
    doc = json.loads((root / "train.json").read_text())
    aspects: dict[int, list[float]] = {d: [] for d in range(10)}
    for a in doc["annotations"]:
        aspects[a["category_id"] - 1].append(a["bbox"][2] / a["bbox"][3])
    assert [round(statistics.median(aspects[d]), 3) for d in range(10)] == list(TYPICAL_ASPECT)


def test_squeeze_is_the_median_of_each_digits_width_over_its_typical_one() -> None:
    # a 1 as narrow as a 1 is counts as 1.0, an 8 half as wide as an 8 is as 0.5
    sites = [
        site(1, 40 * TYPICAL_ASPECT[1]),
        site(8, 20 * TYPICAL_ASPECT[8]),
        site(8, 10 * TYPICAL_ASPECT[8]),
    ]
    assert squeeze(sites, 0.3) == pytest.approx(0.5)
    assert squeeze(sites[:1], 0.3) == pytest.approx(1.0)


def test_squeeze_counts_only_sites_scoring_enough_and_is_none_without_them() -> None:
    sites = [site(4, 40 * TYPICAL_ASPECT[4], score=0.2), site(4, 12 * TYPICAL_ASPECT[4], score=0.3)]
    assert squeeze(sites, 0.3) == pytest.approx(0.3)
    assert squeeze(sites, 0.5) is None
    assert squeeze([], 0.3) is None


def test_narrow_digits_widen_the_photo_by_the_inverse_of_their_squeeze() -> None:
    params = WidenParams(gate=0.85, max_factor=3.0)
    narrow = [site(5, 20 * TYPICAL_ASPECT[5])]  # squeeze 0.5
    assert next_factor(narrow, 1.0, params) == pytest.approx(2.0)
    assert next_factor([site(5, 36 * TYPICAL_ASPECT[5])], 1.0, params) is None  # 0.9: wide enough
    assert next_factor([site(5, 4 * TYPICAL_ASPECT[5])], 1.0, params) == pytest.approx(3.0)  # capped


def test_a_widened_reading_is_measured_as_widened_and_only_widened_further() -> None:
    params = WidenParams(gate=0.85, max_factor=3.0)
    # boxes in the photo's own pixels: squeeze 0.5 there, 0.8 in the reading widened 1.6 x: still under
    # the gate, so widened from the photo by 1 / 0.5 = 2
    narrow = [site(5, 20 * TYPICAL_ASPECT[5])]
    assert next_factor(narrow, 1.6, params) == pytest.approx(2.0)
    assert next_factor(narrow, 1.8, params) is None  # 0.9 as widened: no further
    assert next_factor([site(5, 4 * TYPICAL_ASPECT[5])], 3.0, params) is None  # at the cap: no progress


def test_the_gate_off_or_no_site_widens_nothing() -> None:
    narrow = [site(5, 10 * TYPICAL_ASPECT[5])]
    assert next_factor(narrow, 1.0, WidenParams(gate=0.0)) is None
    assert next_factor([], 1.0, WidenParams()) is None


def test_widen_stretches_only_the_width_bicubic() -> None:
    pixels = np.full((20, 30, 3), 200, dtype=np.uint8)
    pixels[:, 10:14] = 10  # a bar 4 px wide
    wide = widen(pixels, 2.0)
    assert wide.shape == (20, 60, 3) and wide.dtype == np.uint8 and wide.flags.writeable
    dark = (wide[10, :, 0] < 105).sum()
    assert dark == 8  # the bar twice as wide
    assert widen(pixels, 1.01) is pixels  # 30.3 px rounds to the same width


@pytest.mark.parametrize(
    ("widened", "before", "widened_read", "before_read", "kept"),
    [
        (0.9, 0.5, True, True, True),
        (0.5, 0.9, True, True, False),
        (0.5, 0.5, True, True, False),
        (None, None, False, True, False),  # the widened reading read nothing
        (None, None, False, False, False),
        (0.2, None, True, False, True),  # the one before read nothing
        (None, None, True, True, True),  # no verifier: the widened reading
    ],
)
def test_the_widened_reading_is_kept_where_likelier_right(
    widened: float | None, before: float | None, widened_read: bool, before_read: bool, kept: bool
) -> None:
    assert prefer(widened, before, widened_read, before_read) is kept


@pytest.mark.parametrize(
    "settings",
    [
        {"gate": 1.0},
        {"gate": -0.1},
        {"squat_gate": 1.0},
        {"rounds": 0},
        {"max_factor": 1.0},
        {"min_score": 2},
    ],
)
def test_settings_out_of_range_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WidenParams(**settings)  # type: ignore[arg-type]


def test_both_gates_at_zero_are_off() -> None:
    assert WidenParams(gate=0.0, squat_gate=0.0).on is False
    assert WidenParams(gate=0.0).on and WidenParams(squat_gate=0.0).on and WidenParams().on


def test_squat_digits_narrow_the_photo_by_the_inverse_of_their_squeeze() -> None:
    params = WidenParams(squat_gate=1.25, max_factor=3.0)
    squat = [site(5, 60 * TYPICAL_ASPECT[5])]  # squeeze 1.5: a plate seen from below
    assert next_factor(squat, 1.0, params) == pytest.approx(1 / 1.5)
    assert next_factor([site(5, 48 * TYPICAL_ASPECT[5])], 1.0, params) is None  # 1.2: within the gates
    assert next_factor([site(5, 200 * TYPICAL_ASPECT[5])], 1.0, params) == pytest.approx(1 / 3)  # capped
    # measured in a reading narrowed to 0.8 x: 1.5 x 0.8 = 1.2 there, within the gate: no further
    assert next_factor(squat, 0.8, params) is None
    assert next_factor(squat, 0.75, WidenParams(squat_gate=1.1)) == pytest.approx(1 / 1.5)  # 1.125: on
    assert next_factor(squat, 1.0, WidenParams(squat_gate=0.0)) is None


def test_the_squat_gate_is_zero_or_over_one_and_the_settings_keep_the_defaults_where_unset() -> None:
    assert check_squat_gate(0.0) == 0.0 and check_squat_gate(1.3) == 1.3
    for value in (0.5, 1.0, -1.0):
        with pytest.raises(ValueError):
            check_squat_gate(value)
    with pytest.raises(ValueError):
        WidenParams(squat_gate=0.9)
    assert widen_params() == WidenParams()
    assert widen_params(0.0, None) == WidenParams(gate=0.0)
    assert widen_params(None, 1.4) == WidenParams(squat_gate=1.4)


def test_narrowing_resizes_the_width_down() -> None:
    pixels = np.full((20, 60, 3), 200, dtype=np.uint8)
    pixels[:, 20:32] = 10  # a bar 12 px wide
    narrow = widen(pixels, 0.5)
    assert narrow.shape == (20, 30, 3)
    assert (narrow[10, :, 0] < 105).sum() == 6
