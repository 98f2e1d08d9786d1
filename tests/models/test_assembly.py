import pytest

from models.assembly import AssemblyParams, Detection, assemble_number


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
