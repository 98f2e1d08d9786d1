import pytest

from models import labels


def test_digit_label_category_round_trip() -> None:
    for digit in range(10):
        assert labels.label_to_digit(labels.digit_to_label(digit)) == digit
        assert labels.category_id_to_digit(labels.digit_to_category_id(digit)) == digit
    assert labels.digit_to_label(0) == 1 and labels.digit_to_category_id(9) == 10


def test_background_is_not_a_digit() -> None:
    with pytest.raises(ValueError, match="not a digit label"):
        labels.label_to_digit(labels.BACKGROUND_LABEL)


@pytest.mark.parametrize("bad", [-1, 10])
def test_out_of_range_digit_raises(bad: int) -> None:
    with pytest.raises(ValueError):
        labels.digit_to_label(bad)


def test_coco_categories_name_each_digit() -> None:
    cats = labels.coco_categories()
    assert [(c["id"], c["name"]) for c in cats] == [(d + 1, str(d)) for d in range(10)]
