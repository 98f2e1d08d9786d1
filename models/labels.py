"""The one label map: background is label 0, digit d is model label d + 1 and COCO category_id d + 1."""

from __future__ import annotations

NUM_DIGITS = 10
BACKGROUND_LABEL = 0
NUM_CLASSES = NUM_DIGITS + 1  # 10 digits + background
DIGIT_NAMES: tuple[str, ...] = tuple(str(d) for d in range(NUM_DIGITS))


def digit_to_label(digit: int) -> int:
    """Digit 0..9 -> model label 1..10."""
    _check_digit(digit)
    return digit + 1


def label_to_digit(label: int) -> int:
    """Model label 1..10 -> digit 0..9. Label 0 (background) is not a digit."""
    if not 1 <= label <= NUM_DIGITS:
        raise ValueError(f"label {label} is not a digit label (expected 1..{NUM_DIGITS})")
    return label - 1


def digit_to_category_id(digit: int) -> int:
    """Digit 0..9 -> COCO category_id 1..10 (the HW2 convention)."""
    _check_digit(digit)
    return digit + 1


def category_id_to_digit(category_id: int) -> int:
    """COCO category_id 1..10 (HW2 convention) -> digit 0..9."""
    if not 1 <= category_id <= NUM_DIGITS:
        raise ValueError(f"category_id {category_id} is not an HW2 digit category (expected 1..{NUM_DIGITS})")
    return category_id - 1


def coco_categories() -> list[dict[str, object]]:
    """The COCO `categories` section written with every prediction and data set we produce."""
    return [
        {"id": digit_to_category_id(d), "name": DIGIT_NAMES[d], "supercategory": "digit"}
        for d in range(NUM_DIGITS)
    ]


def _check_digit(digit: int) -> None:
    if not 0 <= digit < NUM_DIGITS:
        raise ValueError(f"{digit} is not a digit (expected 0..9)")
