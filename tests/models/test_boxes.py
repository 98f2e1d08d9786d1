import pytest

from models.boxes import box_height, box_iou, clamp_xyxy, scale_xyxy, span_overlap, xywh_to_xyxy, xyxy_to_xywh


def test_xywh_xyxy_round_trip() -> None:
    assert xywh_to_xyxy([10, 20, 5, 8]) == (10, 20, 15, 28)
    assert xyxy_to_xywh(xywh_to_xyxy([10, 20, 5, 8])) == (10, 20, 5, 8)


def test_clamp_to_image() -> None:
    assert clamp_xyxy((-5, 2, 120, 70), 100, 50) == (0, 2, 100, 50)


def test_iou_of_half_overlap() -> None:
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_box_height_is_y2_minus_y1() -> None:
    assert box_height((10, 20, 15, 28)) == 8


def test_scale_multiplies_x_and_y_apart() -> None:
    assert scale_xyxy((1, 2, 3, 5), 2.0, 3.0) == (2.0, 6.0, 6.0, 15.0)


def test_span_overlap_along_each_axis_and_the_gap_as_negative() -> None:
    a, b = (0.0, 0.0, 10.0, 20.0), (6.0, 25.0, 16.0, 45.0)
    assert span_overlap(a, b, 0) == span_overlap(b, a, 0) == 4.0
    assert span_overlap(a, b, 1) == -5.0
