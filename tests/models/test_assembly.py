import pytest

from models.assembly import (
    AssemblyParams,
    Detection,
    assemble_number,
    drop_height_outliers,
    is_column,
    reading_order,
)


def det(x1: float, digit: int, score: float = 0.9, width: float = 10, y1: float = 0) -> Detection:
    return Detection(box_xyxy=(x1, y1, x1 + width, y1 + 20), digit=digit, score=score)


def test_digits_sorted_left_to_right_and_concatenated() -> None:
    result = assemble_number([det(30, 5), det(0, 1), det(15, 9)])
    assert result.text == "195" and result.value == 195
    assert [d.digit for d in result.digits] == [1, 9, 5]


def test_nothing_confident_gives_minus_one() -> None:
    result = assemble_number([det(0, 3, score=0.59)])
    assert result.value == -1 and result.text == "" and result.confidence == 0.0


def test_score_threshold_is_inclusive_and_configurable() -> None:
    dets = [det(0, 3, score=0.6), det(15, 4, score=0.5)]
    assert assemble_number(dets).value == 3
    assert assemble_number(dets, AssemblyParams(score_threshold=0.5)).value == 34


def test_iou_duplicate_keeps_higher_score_across_classes() -> None:
    dets = [det(0, 7, score=0.8), det(1, 1, score=0.95)]
    result = assemble_number(dets, AssemblyParams(center_distance_ratio=0))
    assert result.value == 1


def test_iou_zero_turns_iou_dedup_off() -> None:
    dets = [det(0, 7, score=0.8), det(1, 1, score=0.95)]
    assert assemble_number(dets, AssemblyParams(iou_threshold=0, center_distance_ratio=0)).text == "71"


def test_centre_distance_removes_nested_duplicate() -> None:
    outer = Detection((0, 0, 20, 40), 8, 0.9)
    inner = Detection((6, 12, 14, 28), 0, 0.7)  # small IoU (0.16) but same centre
    assert assemble_number([outer, inner], AssemblyParams(center_distance_ratio=0)).text in ("80", "08")
    assert assemble_number([outer, inner]).text == "8"


def test_adjacent_digits_are_not_duplicates() -> None:
    assert assemble_number([det(0, 1, width=12), det(11, 2, width=12)]).value == 12


def test_leading_zero_kept_in_text() -> None:
    result = assemble_number([det(0, 0), det(15, 7)])
    assert result.text == "07" and result.value == 7


def test_confidence_is_product_of_used_scores() -> None:
    assert assemble_number([det(0, 1, 0.9), det(15, 2, 0.8)]).confidence == pytest.approx(0.72)


def test_out_of_range_params_rejected() -> None:
    with pytest.raises(ValueError):
        AssemblyParams(score_threshold=1.5)


def tall(x1: float, digit: int, height: float, score: float = 0.9, y1: float = 0) -> Detection:
    return Detection(box_xyxy=(x1, y1, x1 + 10, y1 + height), digit=digit, score=score)


def test_height_rule_drops_digits_far_taller_or_shorter_than_the_numbers_others() -> None:
    number = [tall(0, 7, 40), tall(12, 8, 42), tall(24, 1, 15, y1=20), tall(36, 3, 39), tall(48, 9, 70)]
    assert assemble_number(number).text == "78139"  # off by default: the reference rule
    rule = AssemblyParams(height_ratio=1.6)
    assert assemble_number(number, rule).text == "783"  # 15 < 40 / 1.6 and 70 > 40 x 1.6
    assert assemble_number(number, AssemblyParams(height_ratio=2.0)).text == "7839"  # 70 < 80
    assert [d.digit for d in drop_height_outliers(number[::-1], 1.6)] == [3, 8, 7]  # order kept
    edge = [tall(0, 1, 40), tall(12, 2, 64), tall(24, 3, 25), tall(36, 4, 40)]
    assert assemble_number(edge, rule).text == "1234"  # 64 and 25 are exactly 1.6 x / 40 / 1.6


def test_height_rule_with_two_digits_trusts_the_more_confident_one() -> None:
    small_extra = [tall(0, 4, 12, score=0.7), tall(12, 5, 30, score=0.95)]
    rule = AssemblyParams(height_ratio=1.6)
    assert assemble_number(small_extra, rule).text == "5"
    big_extra = [tall(0, 4, 60, score=0.7), tall(12, 5, 30, score=0.95)]
    assert assemble_number(big_extra, rule).text == "5"
    assert assemble_number([tall(0, 4, 60, score=0.99), tall(12, 5, 30, score=0.95)], rule).text == "4"
    assert assemble_number([tall(0, 4, 40), tall(12, 5, 30)], rule).text == "45"  # within 1.6
    assert assemble_number([tall(0, 6, 90)], rule).text == "6"  # one digit: nothing to compare


def test_height_ratio_must_be_off_or_at_least_one() -> None:
    with pytest.raises(ValueError, match="height_ratio"):
        AssemblyParams(height_ratio=0.5)
    with pytest.raises(ValueError, match="height_ratio"):
        AssemblyParams(height_ratio=-1)
    assert AssemblyParams(height_ratio=1.0).height_ratio == 1.0


def at(x1: float, y1: float, digit: int, width: float = 10, height: float = 20) -> Detection:
    return Detection(box_xyxy=(x1, y1, x1 + width, y1 + height), digit=digit, score=0.9)


def test_a_column_is_read_top_to_bottom() -> None:
    # 3 over 8 over 1, drifting left as they go down: left to right they read 183
    column = [at(4, 50, 1, width=6), at(2, 25, 8), at(5, 0, 3)]
    assert assemble_number(column).text == "381"
    assert [d.digit for d in assemble_number(column).digits] == [3, 8, 1]
    assert assemble_number(column, AssemblyParams(read_columns=False)).text == "183"


def test_what_is_and_is_not_a_column() -> None:
    box = lambda d: d.box_xyxy  # noqa: E731
    assert is_column([box(at(0, 0, 1)), box(at(0, 22, 2))])  # one under the other, a gap between
    assert is_column([box(at(0, 0, 1)), box(at(5, 10, 2))])  # half across, half down: at both limits
    assert not is_column([box(at(0, 0, 1)), box(at(5.5, 22, 2))])  # under half across: a staircase
    assert not is_column([box(at(0, 0, 1)), box(at(0, 9, 2))])  # over half down: one place, not two
    assert not is_column([box(at(0, 0, 1)), box(at(12, 0, 2)), box(at(24, 0, 3))])  # a row
    assert not is_column([box(at(0, 40, 1)), box(at(11, 20, 2)), box(at(22, 0, 3))])  # a rising stair
    assert not is_column([box(at(0, 0, 1))]) and not is_column([])
    # three stacked, but the third beside the second: not one column, read as a row
    assert not is_column([box(at(0, 0, 1)), box(at(0, 22, 2)), box(at(12, 22, 3))])


def test_reading_order_gives_indices() -> None:
    row = [(20.0, 0.0, 30.0, 20.0), (0.0, 0.0, 10.0, 20.0), (10.0, 0.0, 20.0, 20.0)]
    assert reading_order(row) == [1, 2, 0]
    column = [(0.0, 44.0, 10.0, 64.0), (0.0, 0.0, 10.0, 20.0), (1.0, 22.0, 11.0, 42.0)]
    assert reading_order(column) == [1, 2, 0]
    assert reading_order(column, read_columns=False) == [0, 1, 2]  # centres 5, 5, 6: ties keep their order
    assert reading_order([]) == []
