"""Whether a photo shows a given number (models/confirm.py)."""

from __future__ import annotations

import math
import random

import pytest

from models.assembly import Detection, assemble_number
from models.confirm import MIN_SCORE, confirm_number, confirming_scores


def digit(x: float, d: int, score: float, y: float = 10.0) -> Detection:
    return Detection((x, y, x + 10.0, y + 20.0), d, score)


def test_the_number_read_is_shown_at_any_min_score() -> None:
    used = [digit(0, 1, 0.9), digit(12, 2, 0.95), digit(24, 3, 0.7)]
    number = assemble_number(used)
    for min_score in (None, 0.0, 1.0):
        found = confirm_number(123, number, used, used, min_score)
        assert (found.shown, found.how, found.number, found.edit, found.score) == (
            True,
            "read",
            number,
            None,
            None,
        )


def test_an_alternative_is_shown_down_to_its_edit_score_only() -> None:
    used = [digit(0, 4, 0.9), digit(24, 2, 0.8)]
    between = digit(12, 1, 0.35)  # a 1 scored under the threshold between the two: "412" one edit away
    sites = [*used, between]
    number = assemble_number(sites)
    assert number.text == "42"
    found = confirm_number(412, number, sites, used, min_score=0.35)
    assert (found.how, found.edit, found.score) == ("alternative", "insert", pytest.approx(0.35))
    assert found.number is not None and found.number.text == "412"
    assert between in found.number.digits
    assert not confirm_number(412, number, sites, used, min_score=0.36).shown
    assert not confirm_number(412, number, sites, used, min_score=None).shown  # the number read only
    assert MIN_SCORE == 0.2 and confirm_number(412, number, sites, used).shown  # by default from 0.2


def test_a_number_neither_read_nor_one_edit_away_is_not_shown() -> None:
    used = [digit(0, 4, 0.9), digit(12, 2, 0.8)]
    number = assemble_number(used)
    for expected in (43, 421, 4, 0):  # 4 is a drop, but of a digit scored 0.8: 1 - 0.8 under 0.2
        found = confirm_number(expected, number, used, used)
        assert (found.shown, found.how, found.number) == (False, None, None)
    assert confirm_number(4, number, used, used, min_score=0.2 - 1e-9).how == "alternative"


def test_numbers_compare_by_value_and_nothing_read_shows_nothing() -> None:
    used = [digit(0, 0, 0.9), digit(12, 3, 0.9), digit(24, 8, 0.9)]
    assert confirm_number(38, assemble_number(used), used, used).how == "read"  # "038" shows 38
    faint = [digit(0, 7, 0.5)]  # under the threshold: nothing read, nothing one edit from nothing
    nothing = assemble_number(faint)
    assert nothing.value == -1
    assert not confirm_number(7, nothing, faint, faint, min_score=0.0).shown
    assert confirming_scores(nothing, faint, faint) == {}
    with pytest.raises(ValueError, match=">= 0"):
        confirm_number(-1, nothing, faint, faint)


def test_confirming_scores_say_what_confirm_number_answers_at_every_min_score() -> None:
    rng = random.Random(7)
    for _ in range(60):
        sites = [
            digit(rng.uniform(0, 60), rng.randrange(10), rng.uniform(0.05, 1.0))
            for _ in range(rng.randint(1, 5))
        ]
        detections = [
            *sites,
            *(digit(s.box_xyxy[0] + 0.5, rng.randrange(10), rng.uniform(0.05, 0.6)) for s in sites),
        ]
        number = assemble_number(sites)
        scores = confirming_scores(number, sites, detections)
        if number.digits:
            assert scores[number.value] == math.inf
        asked = set(scores) | {rng.randrange(1000) for _ in range(20)}
        for expected in asked:
            for min_score in (None, 0.0, 0.1, 0.2, 0.5, 0.9):
                limit = math.inf if min_score is None else min_score
                shown = confirm_number(expected, number, sites, detections, min_score).shown
                assert shown == (scores.get(expected, -math.inf) >= limit), (expected, min_score)


def test_asked_about_several_numbers_it_says_which_pass_the_surest_first() -> None:
    used = [digit(0, 1, 0.7), digit(12, 2, 0.9)]
    rival = digit(12.5, 7, 0.4)  # a 7 on the 2's box: 17 one swap away
    detections = [*used, rival]
    number = assemble_number(used)
    street = [14, 17, 1, 12, 12, 2]  # 1 drops the 2 (1 - 0.9), 2 drops the 1 (1 - 0.7)
    found = confirm_number(street, number, used, detections, min_score=0.05)
    assert found.asked == (14, 17, 1, 12, 2)  # each once, in the order asked
    assert found.passing == (12, 17, 2, 1) and found.match == 12  # read first, then by the edit's score
    assert (found.how, found.number, found.edit, found.score) == ("read", number, None, None)
    without_read = confirm_number([14, 17, 1, 2], number, used, detections, min_score=0.05)
    assert without_read.passing == (17, 2, 1) and without_read.match == 17
    assert (without_read.how, without_read.edit, without_read.score) == ("alternative", "swap", 0.4)
    assert without_read.number is not None and without_read.number.text == "17"
    assert confirm_number([14, 17], number, used, detections, min_score=0.5).passing == ()
    assert confirm_number(street, number, used, detections, min_score=None).passing == (12,)
    nothing = confirm_number([14, 99], number, used, detections)
    assert (nothing.shown, nothing.match, nothing.how, nothing.number) == (False, None, None, None)
    with pytest.raises(ValueError, match="one or more"):
        confirm_number([], number, used, detections)
