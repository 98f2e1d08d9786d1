"""Readings one edit from the number served (models/alternatives.py)."""

from __future__ import annotations

import pytest

from models.alternatives import alternative_readings
from models.assembly import AssembledNumber, AssemblyParams, Detection, assemble_number, read_in_order


def digit(x: float, d: int, score: float, y: float = 10.0) -> Detection:
    return Detection((x, y, x + 10.0, y + 20.0), d, score)


def offered(number: AssembledNumber, sites: list[Detection], detections: list[Detection]) -> list[tuple]:
    return [(a.number.text, a.edit, a.score) for a in alternative_readings(number, sites, detections)]


def test_a_digit_left_out_in_the_row_is_inserted_in_its_place() -> None:
    used = [digit(0, 4, 0.9), digit(24, 2, 0.8)]
    between = digit(12, 1, 0.4)  # under the threshold, between the two: a 1 probably missed
    above = digit(12, 7, 0.5, y=-30)  # another row: not this number's
    sites = [*used, between, above]
    number = assemble_number(sites)
    assert number.text == "42"
    assert offered(number, sites, used)[0] == ("412", "insert", pytest.approx(0.4))
    assert all(text != "472" for text, *_ in offered(number, sites, used))


def test_a_rival_reading_of_a_used_box_is_a_swap_keeping_the_box() -> None:
    used = [digit(0, 4, 0.9), digit(12, 2, 0.97)]
    detections = [*used, digit(0.5, 9, 0.3), digit(12, 2, 0.5), digit(40, 7, 0.6)]
    alternatives = alternative_readings(assemble_number(used), used, detections)
    assert [(a.number.text, a.edit) for a in alternatives] == [("92", "swap"), ("2", "drop"), ("4", "drop")]
    swapped = alternatives[0].number.digits[0]
    assert swapped.box_xyxy == used[0].box_xyxy and (swapped.digit, swapped.score) == (9, 0.3)


def test_drops_are_ranked_by_how_unsure_the_dropped_digit_was() -> None:
    used = [digit(0, 1, 0.65), digit(12, 2, 0.99), digit(24, 3, 0.9)]
    alternatives = offered(assemble_number(used), used, used)
    assert alternatives == [
        ("23", "drop", pytest.approx(0.35)),
        ("12", "drop", pytest.approx(0.1)),
        ("13", "drop", pytest.approx(0.01)),
    ]


def test_one_alternative_per_number_the_surest_and_never_the_served_one() -> None:
    used = [digit(0, 7, 0.7), digit(12, 7, 0.95)]
    # dropping either 7 reads "7": kept once, at the surer drop; a rival 7 on a 7 is no rival
    detections = [*used, digit(0, 7, 0.6), digit(12, 1, 0.2), digit(12.5, 1, 0.1)]
    alternatives = offered(assemble_number(used), used, detections)
    assert alternatives == [("7", "drop", pytest.approx(0.3)), ("71", "swap", pytest.approx(0.2))]


def test_edits_under_the_floor_and_empty_numbers_offer_nothing() -> None:
    used = [digit(0, 5, 0.9)]
    faint = [*used, digit(0, 6, 0.01), digit(12, 1, 0.02)]
    assert alternative_readings(assemble_number(used), faint, faint) == []  # one digit: no drop either
    assert alternative_readings(assemble_number([]), faint, faint) == []


def test_read_in_order_is_the_assembly_without_its_filters() -> None:
    digits = [digit(30, 3, 0.5), digit(0, 1, 0.2), digit(15, 2, 0.9)]
    number = read_in_order(digits)
    assert (number.text, number.value) == ("123", 123)
    assert number.confidence == pytest.approx(0.09)
    assert read_in_order([]) == assemble_number([])


def test_readings_of_a_column_are_read_by_the_rule_the_number_was() -> None:
    # 5 over 1 over 9, the 1 a little right: left to right the three read 519 too, two of them not
    column = [digit(0, 5, 0.99, y=0), digit(2, 1, 0.7, y=25), digit(0, 9, 0.8, y=50)]
    served = assemble_number(column)
    assert served.text == "519"
    assert {text for text, edit, _ in offered(served, column, column)} == {"59", "19", "51"}
    flat = assemble_number(column, AssemblyParams(read_columns=False))
    assert flat.text == "591"  # the 5 and the 9 tie at x; the 1 lies right of both
    assert {text for text, _, _ in offered(flat, column, column)} == {"91", "51", "59"}


def test_a_leading_zero_dropped_is_the_same_number_not_another() -> None:
    used = [digit(0, 0, 0.7), digit(12, 3, 0.99), digit(24, 8, 0.99)]
    number = assemble_number(used)
    assert (number.text, number.value) == ("038", 38)
    assert [(text, edit) for text, edit, _ in offered(number, used, used)] == [("08", "drop"), ("03", "drop")]


def test_most_keeps_the_surest_and_zero_works_out_none() -> None:
    used = [digit(0, 1, 0.65), digit(12, 2, 0.99), digit(24, 3, 0.9)]
    number = assemble_number(used)
    every = alternative_readings(number, used, used)
    assert alternative_readings(number, used, used, most=2) == every[:2]
    assert alternative_readings(number, used, used, most=0) == []
